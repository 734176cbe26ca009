"""The CUDA IPC transport on the fake device backend (fake IPC: memfd-backed device memory
that the peers map, interprocess events as shared counters, the kernels compiled as host C
and run on the fake stream threads with random delays).

Every result is compared bit for bit with the host path (NumPy arrays through the same
communicator's shared-memory transport) for the same inputs.

Usage: python -m tests.workers.device_ipc [matrix|engine|ordering|fallback]
"""

from __future__ import annotations

import os
import sys

import numpy as np

import ringred
from ringred.testing import FakeDeviceArray

from .common import BF16, DTYPES, FLOATS, data, digest, main, same_on_all_ranks

OPS = {"sum": ringred.Sum, "avg": ringred.Average, "min": ringred.Min, "max": ringred.Max,
       "prod": ringred.Product}


def dev(a: np.ndarray) -> FakeDeviceArray:
    return FakeDeviceArray.from_host(a)


def chunk_elems(dtype: np.dtype) -> int:
    return int(os.environ.get("RINGRED_IPC_CHUNK_BYTES", 128 << 20)) // dtype.itemsize


def sizes(n: int, dtype: np.dtype) -> list[int]:
    # 0, 1, fewer than the ranks, not divisible by them, more than one chunk (and more chunks
    # than slots, so that slots are reused)
    c = chunk_elems(dtype)
    return sorted({0, 1, max(n - 1, 1), 7 * n + 3, 5 * c + 3 * n + 1})


def same_bits(a: np.ndarray, b: np.ndarray, op: str) -> bool:
    if a.dtype in FLOATS and op in ("sum", "avg", "prod"):
        # NaN payloads of sum/prod are the hardware's business: compare NaN-ness there
        fa, fb = a.astype(np.float64), b.astype(np.float64)
        na, nb = np.isnan(fa), np.isnan(fb)
        return bool(np.array_equal(na, nb)) and digest(np.where(na, 0, a)) == digest(
            np.where(nb, 0, b))
    return digest(a) == digest(b)


def specials(dtype: np.dtype, count: int, r: int) -> np.ndarray:
    """NaN, +-0, +-inf, subnormals and the largest values, rank-shifted."""
    vals = [np.nan, 0.0, -0.0, np.inf, -np.inf, 1e-42, -1e-42, 6.0e-8, 65504.0, 65520.0,
            -65504.0, 3.4e38, 1.0, -1.0, 0.5, 2.0 ** -14]
    a = np.array([vals[(i + r) % len(vals)] for i in range(count)], np.float64)
    with np.errstate(over="ignore"):
        return a.astype(dtype)


def check_matrix() -> None:
    """Every dtype x op x size: IPC result == host result, bit for bit, on every rank."""
    n, r = ringred.size(), ringred.rank()
    assert ringred.device.transport()[0] in ("undecided", "ipc")
    seed = 0
    for dtype in DTYPES:
        for opname, op in OPS.items():
            for count in sizes(n, dtype):
                seed += 1
                x = data(r, dtype, count, seed, opname)
                got = ringred.allreduce(dev(x), op=op).get()
                want = ringred.allreduce(x, op=op)
                assert same_bits(got, want, opname), (str(dtype), opname, count)
                assert same_on_all_ranks(got), (str(dtype), opname, count)
    assert ringred.device.transport() == ("ipc", ""), ringred.device.transport()
    for dtype in [np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64)] + (
            [BF16] if BF16 is not None else []):
        x = specials(dtype, 301, r)
        for opname in ("min", "max", "sum"):
            got = ringred.allreduce(dev(x), op=OPS[opname]).get()
            assert same_bits(got, ringred.allreduce(x, op=OPS[opname]), opname), (dtype, opname)
        for pre, post in ((0.5, 1.0), (1.0, 1.0 / 3.0), (3.0, 0.25)):
            y = data(r, dtype, 2001, 9)
            got = ringred.allreduce(dev(y), op=ringred.Average, prescale_factor=pre,
                                    postscale_factor=post).get()
            want = ringred.allreduce(y, op=ringred.Average, prescale_factor=pre,
                                     postscale_factor=post)
            assert same_bits(got, want, "avg"), (dtype, pre, post)
    # in place, into a given output
    x = data(r, np.dtype(np.float32), 9001, 4)
    d = dev(x)
    assert ringred.allreduce(d, out=d) is d
    assert digest(d.get()) == digest(ringred.allreduce(x))


def check_other_collectives() -> None:
    """Broadcast, allgather and reducescatter over IPC: the host path's bits, every rank."""
    n, r = ringred.size(), ringred.rank()
    c = chunk_elems(np.dtype(np.float32))
    for count in sorted({0, 1, 7 * n + 3, 3 * c + 5}):
        for root in range(n):
            x = data(r, np.dtype(np.float32), count, 40 + root)
            got = ringred.broadcast(dev(x), root_rank=root).get()
            assert digest(got) == digest(data(root, np.dtype(np.float32), count, 40 + root))
            d = dev(x)
            assert ringred.broadcast(d, root_rank=root, out=d) is d  # in place
            assert digest(d.get()) == digest(got)
    for rows in (1, n, 3 * n + 1, 2 * c // 3 + 1):
        for dtype, opname in ((np.dtype(np.float32), "avg"), (np.dtype(np.int64), "sum"),
                              (np.dtype(np.float16), "max")):
            x = data(r, dtype, rows * 3, 50 + rows, opname).reshape(rows, 3)
            got = ringred.reducescatter(dev(x), op=OPS[opname]).get()
            want = ringred.reducescatter(x, op=OPS[opname])
            assert got.shape == want.shape and same_bits(got, want, opname), (rows, dtype)
    for mine in (0, 1, c // 4 + 3):
        k = 0 if r == 0 else mine + r
        x = data(r, np.dtype(np.float64), k * 2, 60 + mine).reshape(k, 2)
        got = ringred.allgather(dev(x)).get()
        want = ringred.allgather(x)
        assert got.shape == want.shape and digest(got) == digest(want), mine
    # through the engine (broadcast and reducescatter use IPC there too)
    xs = data(r, np.dtype(np.float32), 2 * c + 7, 70)
    got = ringred.broadcast_async(dev(xs), root_rank=n - 1, name="o.b").wait().get()
    assert digest(got) == digest(data(n - 1, np.dtype(np.float32), 2 * c + 7, 70))
    y = data(r, np.dtype(np.float32), (2 * c + 1) * 2, 71).reshape(-1, 2)
    got = ringred.reducescatter_async(dev(y), name="o.rs").wait().get()
    assert same_bits(got, ringred.reducescatter(y), "avg")


def check_engine() -> None:
    """Fused device allreduces through the engine over IPC, in a different order per rank."""
    n, r = ringred.size(), ringred.rank()
    cases = [(f"e.{i}", np.dtype(np.float32) if i % 3 else np.dtype(np.int64), 1 + 37 * i)
             for i in range(60)]
    order = np.random.default_rng([5, r]).permutation(len(cases))
    hs = {}
    for i in order:
        name, dtype, count = cases[i]
        x = data(r, dtype, count, i)
        hs[name] = (ringred.allreduce_async(dev(x), op=ringred.Sum, name=name), x)
    for name, _dtype, _count in cases:
        h, x = hs[name]
        got = h.wait().get()
        want = ringred.allreduce(x, op=ringred.Sum)
        assert same_bits(got, want, "sum"), name
    assert ringred.device.transport(engine=True) == ("ipc", "")
    big = data(r, np.dtype(np.float64), 3 * chunk_elems(np.dtype(np.float64)) + 5, 77)
    got = ringred.allreduce_async(dev(big), name="e.big").wait().get()
    assert same_bits(got, ringred.allreduce(big), "avg")
    assert n >= 1


def body_ordering() -> None:
    """Many chunks through few slots, checked exactly (integers: no rounding).  The last
    rank's input is written by its producer stream 50 ms late, so its copies into its slots
    come late too, deterministically; run with a planted bug (RINGRED_TEST_PLANT=
    ipc_no_event_wait / ipc_no_flag_wait), the others then read its slots early and fail."""
    from ringred.testing import FakeStream

    n, r = ringred.size(), ringred.rank()
    c = chunk_elems(np.dtype(np.int32))
    for rnd in range(4):
        count = 6 * c + 11 * rnd + 1
        x = np.arange(count, dtype=np.int32) * (r + 1) + rnd
        if r == n - 1:
            with FakeStream() as s:
                d = FakeDeviceArray.from_host(np.zeros_like(x), stream=s)
                s.sleep(0.05)
                s.copy(d, x)
                got = ringred.allreduce(d, op=ringred.Sum).get()
        else:
            got = ringred.allreduce(dev(x), op=ringred.Sum).get()
        want = np.arange(count, dtype=np.int32) * (n * (n + 1) // 2) + n * rnd
        bad = np.flatnonzero(got != want)
        assert bad.size == 0, f"wrong result at {bad[:5]}: {got[bad[:5]]} != {want[bad[:5]]}"


def body_fallback() -> None:
    """Without a shared-memory segment (RINGRED_TRANSPORT=mpi) the device path stages, and
    says why; results are still right."""
    n, r = ringred.size(), ringred.rank()
    x = np.arange(5000, dtype=np.float32) * (r + 1)
    got = ringred.allreduce(dev(x), op=ringred.Sum).get()
    assert np.array_equal(got, ringred.allreduce(x, op=ringred.Sum))
    name, why = ringred.device.transport()
    if n > 1 and os.environ.get("RINGRED_TRANSPORT") == "mpi":
        assert name == "staged" and "shared-memory" in why, (name, why)
    elif os.environ.get("RINGRED_DEVICE_TRANSPORT") == "staged":
        assert (name, why) == ("staged", "RINGRED_DEVICE_TRANSPORT=staged"), (name, why)


def body_matrix() -> None:
    check_matrix()
    check_other_collectives()
    check_engine()


MODES = {"matrix": body_matrix, "ordering": body_ordering, "fallback": body_fallback}

if __name__ == "__main__":
    main(MODES[sys.argv[1] if len(sys.argv) > 1 else "matrix"])
