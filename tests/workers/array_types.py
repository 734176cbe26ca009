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


if __name__ == "__main__":
    main(body)
