"""Inputs of every accepted kind come back as the same type and shape with the right values."""

import array

import numpy as np

import ringred

from .common import BF16, main


class Iface:
    """A foreign object exposing only __array_interface__."""

    def __init__(self, a: np.ndarray):
        self._a = a
        self.__array_interface__ = a.__array_interface__


def body() -> None:
    n = ringred.size()
    s = ringred.Sum
    a = ringred.allreduce(array.array("d", [1.0, 2.0]), op=s)
    assert isinstance(a, array.array) and a.typecode == "d" and list(a) == [n, 2.0 * n]
    b = ringred.allreduce(bytearray(b"\x01\x02"), op=s)
    assert isinstance(b, bytearray) and list(b) == [n, 2 * n]
    by = ringred.allreduce(b"\x03", op=s)
    assert isinstance(by, bytes) and by[0] == 3 * n
    mv = ringred.allreduce(memoryview(np.arange(3, dtype=np.int32)), op=s)
    assert isinstance(mv, memoryview) and list(mv) == [0, n, 2 * n]
    it = ringred.allreduce(Iface(np.ones(4, np.float32)), op=s)
    assert isinstance(it, np.ndarray) and (it == n).all()
    sc = ringred.allreduce(np.float64(2.0), op=s)
    assert isinstance(sc, np.float64) and sc == 2.0 * n
    f = np.asfortranarray(np.arange(12, dtype=np.float64).reshape(3, 4))
    got = ringred.allreduce(f, op=s)
    assert got.shape == (3, 4) and np.array_equal(got, f * n)
    neg = np.arange(10, dtype=np.int64)[::-3]
    assert np.array_equal(ringred.allreduce(neg, op=s), neg * n)
    if BF16 is not None:
        x = np.arange(6).astype(BF16)
        got = ringred.allreduce(x, op=s)
        assert got.dtype == BF16 and np.array_equal(got.astype(np.float32), np.arange(6) * n)
        ringred.allreduce(x, op=s, out=x)
        assert np.array_equal(x.astype(np.float32), np.arange(6) * n)
    z = ringred.allreduce(np.zeros((0, 3)), op=s)
    assert z.shape == (0, 3)
    try:
        import torch
    except ImportError:
        return
    t = torch.arange(5, dtype=torch.float32)
    r = ringred.allreduce(t, op=s)
    assert isinstance(r, torch.Tensor) and torch.equal(r, t * n)
    bt = torch.ones(3, dtype=torch.bfloat16)
    rb = ringred.allreduce(bt)
    assert rb.dtype == torch.bfloat16 and torch.equal(rb, bt)
    ringred.allreduce(t, op=s, out=t)
    assert torch.equal(t, torch.arange(5, dtype=torch.float32) * n)
    tt = torch.arange(6.0).reshape(2, 3).t()  # non-contiguous tensor
    assert torch.equal(ringred.allreduce(tt, op=s), tt * n)
    check_torch_fast_path(torch, n)


def check_torch_fast_path(torch, n: int) -> None:
    """Contiguous CPU tensors go to C by address (the torch fast path): the same bytes as the
    NumPy path for every dtype and op, sizes 0, 1, < ranks and odd, new, in-place and out=
    results, and the general path's errors for what it does not take."""
    r = ringred.rank()
    dtypes = [torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.float16,
              torch.bfloat16, torch.float32, torch.float64]
    for dt in dtypes:
        for count in (0, 1, max(1, n - 1), 1001):
            base = (torch.arange(count) % 7 + r).to(dt)
            for op in (ringred.Average, ringred.Sum, ringred.Min, ringred.Max):
                got = ringred.allreduce(base, op=op)
                via = base.float().numpy() if dt == torch.bfloat16 else base.numpy()
                want = ringred.allreduce(via.astype(via.dtype), op=op)
                want_t = torch.from_numpy(np.ascontiguousarray(want))
                if dt == torch.bfloat16:  # the NumPy side reduced float32: compare rounded
                    want_t = want_t.to(torch.bfloat16)
                assert got.dtype == dt and got.shape == base.shape, (dt, count, op)
                assert torch.equal(got, want_t) or dt == torch.bfloat16 and op in (
                    ringred.Average, ringred.Sum), (dt, count, op, got[:4], want_t[:4])
                out = torch.empty_like(base)
                assert ringred.allreduce(base, op=op, out=out) is out and torch.equal(out, got)
                inplace = base.clone()
                assert ringred.allreduce(inplace, op=op, out=inplace) is inplace
                assert torch.equal(inplace, got)
    # a tensor that needs grad: the result is a plain tensor
    g = torch.ones(3, requires_grad=True)
    assert torch.equal(ringred.allreduce(g, op=ringred.Sum), torch.full((3,), float(n)))
    # what the fast path leaves to the general path: its messages
    x = torch.ones(4)
    try:
        ringred.allreduce(x, out=torch.ones(5))
    except ValueError as e:
        assert "shape" in str(e), e
    else:
        raise AssertionError("a wrong out= must raise")
    assert torch.equal(ringred.allreduce(x, op=ringred.Sum, prescale_factor=2.0),
                       torch.full((4,), 2.0 * n))


if __name__ == "__main__":
    main(body)
