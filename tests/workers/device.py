"""Device-array collectives on the fake device backend (ringred.testing.FakeDeviceArray).

The fake backend runs copies on worker threads with random delays and poisons staging
memory, so a wrong order in the staging pipeline shows up as wrong results here.

Usage: python -m tests.workers.device [staged|direct]
"""

from __future__ import annotations

import os
import sys

import numpy as np

import ringred
from ringred.testing import FakeDeviceArray, FakeStream

from .collectives import close, reference
from .common import (
    BF16,
    data,
    main,
    no_memory,
    same_on_all_ranks,
    without_memory_on_last_rank,
)

FLOAT_DTYPES = [np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64)] + (
    [BF16] if BF16 is not None else [])
OPS = {"sum": ringred.Sum, "avg": ringred.Average, "max": ringred.Max}


def sizes(n: int) -> list[int]:
    # 0, 1, odd, and enough for many segments with RINGRED_DEVICE_SEGMENT_BYTES=256
    return [0, 1, 7 * n + 3, 1500 + n]


def dev(a: np.ndarray) -> FakeDeviceArray:
    return FakeDeviceArray.from_host(a)


def check_allreduce() -> None:
    n, r = ringred.size(), ringred.rank()
    seed = 100
    cases = [(dt, op) for dt in FLOAT_DTYPES for op in ("sum", "avg")]
    cases += [(np.dtype(np.int32), op) for op in ("sum", "avg", "max")]
    cases += [(np.dtype(np.float32), "max"), (np.dtype(np.uint8), "sum")]
    for dtype, opname in cases:
        for count in sizes(n):
            seed += 1
            x = data(r, dtype, count, seed, opname)
            want = reference(opname, dtype, count, seed, n)
            got = ringred.allreduce(dev(x), op=OPS[opname])
            assert isinstance(got, FakeDeviceArray), type(got)
            assert got.dtype == dtype and got.shape == x.shape
            g = got.get()
            assert close(g, want, dtype, opname, n, count, seed), (dtype, opname, count)
            assert same_on_all_ranks(g), (dtype, opname, count)


def check_allreduce_variants() -> None:
    n, r = ringred.size(), ringred.rank()
    x = data(r, np.dtype(np.float64), 1003, 7)
    want = reference("sum", np.dtype(np.float64), 1003, 7, n)
    # in place
    d = dev(x)
    res = ringred.allreduce(d, op=ringred.Sum, out=d)
    assert res is d and np.allclose(d.get(), want)
    # scale factors
    res = ringred.allreduce(dev(x), op=ringred.Sum, prescale_factor=0.5, postscale_factor=3.0)
    assert np.allclose(res.get(), want * 1.5)
    # non-contiguous input and output
    big = data(r, np.dtype(np.float64), 2006, 7).reshape(1003, 2)
    wantbig = reference("sum", np.dtype(np.float64), 2006, 7, n).reshape(1003, 2)
    col = FakeDeviceArray(big)[:, 1]
    out = FakeDeviceArray.empty((1003, 2), np.float64)[:, 0]
    res = ringred.allreduce(col, op=ringred.Sum, out=out)
    assert res is out and np.allclose(out.get(), wantbig[:, 1])
    # 0-d and multi-dimensional
    res = ringred.allreduce(dev(np.array(r + 1.0)), op=ringred.Sum)
    assert res.shape == () and float(res.get()) == n * (n + 1) / 2
    m = np.arange(24, dtype=np.float32).reshape(2, 3, 4) * (r + 1)
    res = ringred.allreduce(dev(m), op=ringred.Sum)
    assert res.shape == (2, 3, 4) and np.array_equal(res.get(), m / (r + 1) * n * (n + 1) / 2)


def check_broadcast() -> None:
    n, r = ringred.size(), ringred.rank()
    for root in range(n):
        for count in sizes(n):
            x = data(r, np.dtype(np.float32), count, 5)
            want = data(root, np.dtype(np.float32), count, 5)
            got = ringred.broadcast(dev(x), root_rank=root)
            assert isinstance(got, FakeDeviceArray)
            assert np.array_equal(got.get(), want), (root, count)
    # in place, bfloat16
    dt = BF16 if BF16 is not None else np.dtype(np.float16)
    x = data(r, dt, 999, 6)
    d = dev(x)
    assert ringred.broadcast(d, root_rank=n - 1, out=d) is d
    assert np.array_equal(d.get().view(np.uint16), data(n - 1, dt, 999, 6).view(np.uint16))


def check_allgather() -> None:
    n, r = ringred.size(), ringred.rank()
    x = np.full((r + 1, 3), r, np.int64) + np.arange(3)
    got = ringred.allgather(dev(x))
    want = np.concatenate([np.full((q + 1, 3), q, np.int64) + np.arange(3) for q in range(n)])
    assert isinstance(got, FakeDeviceArray) and np.array_equal(got.get(), want)
    # some ranks contribute nothing; many bytes
    rows = 0 if r == 0 else 400
    x = data(r, np.dtype(np.float32), rows * 5, 9).reshape(rows, 5)
    got = ringred.allgather(dev(x))
    want = np.concatenate([data(q, np.dtype(np.float32), (0 if q == 0 else 400) * 5, 9)
                           .reshape(-1, 5) for q in range(n)])
    assert np.array_equal(got.get(), want)
    # nothing at all
    got = ringred.allgather(dev(np.zeros((0, 2), np.float64)))
    assert got.shape == (0, 2)
    if n > 1:
        without_memory_on_last_rank(lambda: ringred.allgather(dev(np.ones((300, 4)))),
                                    ringred.device, "device_empty", no_memory)


def check_reducescatter() -> None:
    n, r = ringred.size(), ringred.rank()
    for rows in (1, n, 3 * n + 1, 700):
        x = data(r, np.dtype(np.float64), rows * 3, 11).reshape(rows, 3)
        want = reference("avg", np.dtype(np.float64), rows * 3, 11, n).reshape(rows, 3)
        split = [rows // n + (1 if q < rows % n else 0) for q in range(n)]
        lo = sum(split[:r])
        got = ringred.reducescatter(dev(x))
        assert isinstance(got, FakeDeviceArray) and got.shape == (split[r], 3)
        assert np.allclose(got.get(), want[lo:lo + split[r]]), rows
    got = ringred.reducescatter(dev(np.arange(10 * n, dtype=np.int32).reshape(10 * n)),
                                op=ringred.Sum)
    assert np.array_equal(got.get(), np.arange(10 * r, 10 * r + 10, dtype=np.int32) * n)


def expect_mismatch(fn, *words: str) -> None:
    try:
        fn()
    except ringred.MismatchError as e:
        for w in words:
            assert w in str(e), (w, str(e))
        return
    raise AssertionError("no MismatchError")


def check_mismatch() -> None:
    n, r = ringred.size(), ringred.rank()
    # element count differs (the staged pipeline must not let some ranks finish)
    expect_mismatch(lambda: ringred.allreduce(dev(np.ones(1000 + 300 * r, np.float32))),
                    "element count")
    # dtype differs
    dt = np.float32 if r == 0 else np.float64
    expect_mismatch(lambda: ringred.allreduce(dev(np.ones(64, dt))), "data type")
    # broadcast root differs
    expect_mismatch(lambda: ringred.broadcast(dev(np.ones(500, np.float32)), root_rank=r % 2),
                    "root rank")
    # a host array on one rank, device arrays on the others
    x = np.ones(700, np.float32)
    expect_mismatch(lambda: ringred.allreduce(x if r == 0 else dev(x)), "collective")
    # a rank that rejects its argument locally: it raises its own error, the others mismatch
    try:
        bad = FakeDeviceArray(np.ones(8, np.bool_)) if r == n - 1 else dev(np.ones(8, np.int8))
        ringred.allreduce(bad)
    except ringred.UnsupportedError:
        assert r == n - 1
    except ringred.MismatchError:
        assert r != n - 1
    else:
        raise AssertionError("no error")
    # still usable afterwards
    got = ringred.allreduce(dev(np.full(3000, r, np.float64)), op=ringred.Sum)
    assert np.array_equal(got.get(), np.full(3000, n * (n - 1) / 2))


class CaiOnly:
    """Any __cuda_array_interface__ producer (host memory: RINGRED_DEVICE_BACKEND=fake)."""

    def __init__(self, a: np.ndarray):
        self.a = a

    @property
    def __cuda_array_interface__(self) -> dict:
        return {"shape": self.a.shape, "typestr": self.a.dtype.str, "version": 3,
                "data": (self.a.__array_interface__["data"][0], False), "strides": None}


class DLPackOnly:
    """A DLPack producer claiming a CUDA device (host memory: RINGRED_DEVICE_BACKEND=fake)."""

    def __init__(self, a: np.ndarray):
        self.a = a

    def __dlpack_device__(self) -> tuple[int, int]:
        return (2, 0)

    def __dlpack__(self, stream=None):
        return self.a.__dlpack__()


def check_other_producers() -> None:
    n, r = ringred.size(), ringred.rank()
    os.environ["RINGRED_DEVICE_BACKEND"] = "fake"
    try:
        for cls in (CaiOnly, DLPackOnly):
            x = np.arange(2001, dtype=np.float32) * (r + 1)
            got = ringred.allreduce(cls(x), op=ringred.Sum)
            assert isinstance(got, FakeDeviceArray), (cls, type(got))
            assert np.array_equal(got.get(), np.arange(2001, dtype=np.float32) * n * (n + 1) / 2)
    finally:
        del os.environ["RINGRED_DEVICE_BACKEND"]


def check_producer_stream() -> None:
    """The input's content is written by work queued on its producer stream behind a pause:
    the staged collectives must order their reads (and the in-place result) after it."""
    n, r = ringred.size(), ringred.rank()
    dt = np.dtype(np.float32)
    for count in (1, 5000):
        x = data(r, dt, count, 41)
        want = reference("sum", dt, count, 41, n)
        with FakeStream() as s:
            d = FakeDeviceArray.from_host(np.zeros(count, dt), stream=s)
            assert d.__cuda_array_interface__["stream"] == s.handle
            s.sleep(0.05)
            s.copy(d, x)
            got = ringred.allreduce(d, op=ringred.Sum)
            assert close(got.get(), want, dt, "sum", n, count, 41), count
            # in place: the result lands after the queued write, and the stream sees it
            s.sleep(0.05)
            s.copy(d, x)
            assert ringred.allreduce(d, op=ringred.Sum, out=d) is d
            assert close(d.get(), want, dt, "sum", n, count, 41), count
            # broadcast from the last rank
            s.sleep(0.05)
            s.copy(d, x)
            got = ringred.broadcast(d, root_rank=n - 1)
            assert np.array_equal(got.get(), data(n - 1, dt, count, 41)), count


def check_direct() -> None:
    """RINGRED_FAKE_CUDA_AWARE=1: allreduce goes to MPI on the (fake) device pointers."""
    n, r = ringred.size(), ringred.rank()
    assert ringred.device.cuda_aware("fake")
    for dtype in (np.dtype(np.float32), np.dtype(np.int64), np.dtype(np.float16)):
        for opname in ("sum", "avg", "max"):
            count = 5003
            x = data(r, dtype, count, 21, opname)
            want = reference(opname, dtype, count, 21, n)
            got = ringred.allreduce(dev(x), op=OPS[opname])
            assert close(got.get(), want, dtype, opname, n, count, 21), (dtype, opname)
    expect_mismatch(lambda: ringred.allreduce(dev(np.ones(10 + r, np.float32))),
                    "element count")
    # RINGRED_CUDA_AWARE=1 without a CUDA-aware MPI is an error on every rank
    os.environ["RINGRED_CUDA_AWARE"] = "1"
    os.environ["RINGRED_FAKE_CUDA_AWARE"] = "0"
    ringred.shutdown()
    ringred.init()
    try:
        ringred.allreduce(dev(np.ones(10, np.float32)))
    except ringred.UnsupportedError as e:
        assert "RINGRED_CUDA_AWARE=1" in str(e), str(e)
    else:
        raise AssertionError("RINGRED_CUDA_AWARE=1 accepted a non-CUDA-aware MPI")
    os.environ["RINGRED_CUDA_AWARE"] = "0"
    ringred.shutdown()
    ringred.init()
    got = ringred.allreduce(dev(np.ones(10, np.float32)), op=ringred.Sum)
    assert np.array_equal(got.get(), np.full(10, n, np.float32))


def body() -> None:
    mode = sys.argv[1] if len(sys.argv) > 1 else "staged"
    if mode == "direct":
        check_direct()
        return
    check_allreduce()
    check_allreduce_variants()
    check_broadcast()
    check_allgather()
    check_reducescatter()
    if ringred.size() > 1:
        check_mismatch()
    check_other_producers()
    check_producer_stream()


if __name__ == "__main__":
    main(body)
