"""Every collective x dtype x op x size against a NumPy float64 / exact-integer reference.

Usage: python -m tests.workers.collectives [quick|full]; with RINGRED_TEST_CASES, the cases
named there (tests/workers/cases.py).
"""

from __future__ import annotations

import os
import sys

import numpy as np

import ringred

from .cases import ENV as CASES_ENV
from .cases import run_cases
from .common import DTYPES, EPS, FLOATS, data, main, same_on_all_ranks

OPS = {"sum": ringred.Sum, "avg": ringred.Average, "min": ringred.Min, "max": ringred.Max,
       "prod": ringred.Product}


def reference(op: str, dtype: np.dtype, count: int, seed: int, n: int) -> np.ndarray:
    ins = [data(r, dtype, count, seed, op) for r in range(n)]
    if dtype in FLOATS:
        wide = [a.astype(np.float64) for a in ins]
    else:
        wide = ins  # exact integer arithmetic, wrapping like C
    acc = wide[0].copy()
    for a in wide[1:]:
        if op in ("sum", "avg"):
            acc = acc + a
        elif op == "min":
            acc = np.minimum(acc, a)
        elif op == "max":
            acc = np.maximum(acc, a)
        else:
            acc = acc * a
    if op == "avg":
        if dtype in FLOATS:
            acc = acc / n
        else:
            s = acc.astype(np.int64)
            acc = (np.sign(s) * (np.abs(s) // n)).astype(dtype)
    return acc


def close(got: np.ndarray, want: np.ndarray, dtype: np.dtype, op: str, n: int, count: int,
          seed: int, part: slice = slice(None)) -> bool:
    if dtype not in FLOATS or op in ("min", "max"):
        return np.array_equal(got.astype(np.float64) if dtype in FLOATS else got,
                              want.astype(np.float64) if dtype in FLOATS else want)
    g = got.astype(np.float64)
    if op in ("sum", "avg"):
        scale = sum(np.abs(data(r, dtype, count, seed, op).astype(np.float64)) for r in range(n))
        scale = scale[part]
        if op == "avg":
            scale = scale / n
        tol = EPS[dtype] * (n + 1) * (scale + np.abs(want)) + 1e-300
    else:
        tol = EPS[dtype] * (n + 1) * np.abs(want) * 2
    return bool(np.all(np.abs(g - want) <= tol))


def sizes(n: int, full: bool) -> list[int]:
    s = [0, 1, max(n - 1, 1), 7 * n + 3, 40_000 + n]  # 40k elems > one 4 KiB..256 KiB segment
    if full:
        s.append(10_000_000)
    return s


def check_allreduce(full: bool) -> None:
    n, r = ringred.size(), ringred.rank()
    small = shm_small_bytes()
    seed = 1
    for dtype in DTYPES:
        for opname, op in OPS.items():
            for count in sizes(n, False):
                seed += 1
                x = data(r, dtype, count, seed, opname)
                want = reference(opname, dtype, count, seed, n)
                got = ringred.allreduce(x, op=op)
                assert got.dtype == dtype and got.shape == x.shape
                assert close(got, want, dtype, opname, n, count, seed), (dtype, opname, count)
                assert same_on_all_ranks(got), (dtype, opname, count)
                # in place, and through out= into a non-contiguous view
                y = x.copy()
                ringred.allreduce(y, op=op, out=y)
                assert np.array_equal(y.view(np.uint8), got.view(np.uint8)), "in place"
                big = np.zeros(2 * count, dtype)
                ringred.allreduce(x, op=op, out=big[::2])
                same = np.array_equal(big[::2].copy().view(np.uint8), got.view(np.uint8))
                assert same, "out view"
                # non-contiguous input
                xs = np.repeat(x, 2)[::2]
                assert np.array_equal(ringred.allreduce(xs, op=op).view(np.uint8),
                                      got.view(np.uint8)), "strided input"
                check_shared(x, op, got, small)
    if full:
        for dtype, opname in ((np.dtype(np.float32), "sum"), (np.dtype(np.int64), "max"),
                              (np.dtype(np.float16), "avg")):
            count = 10_000_000
            x = data(r, dtype, count, 7, opname)
            got = ringred.allreduce(x, op=OPS[opname])
            want = reference(opname, dtype, count, 7, n)
            assert close(got, want, dtype, opname, n, count, 7), (dtype, opname, count)
            assert same_on_all_ranks(got)


def shm_small_bytes() -> int:
    """The shm transport's one-sync threshold in force (RINGRED_SHM_SMALL_BYTES)."""
    v = os.environ.get("RINGRED_SHM_SMALL_BYTES", "32k").strip().lower()
    mult = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}.get(v[-1:], 1)
    return (int(v.rstrip("kmg")) * mult + 63) // 64 * 64


def shared_allreduce(variant: str, x: np.ndarray, op: ringred.ReduceOp, r: int) -> np.ndarray:
    """Allreduce of a shared copy of ``x`` in one of the ways check_shared tries."""
    xs = ringred.empty(x.shape, x.dtype)
    xs[...] = x
    if variant == "in":
        return ringred.allreduce(xs, op=op)
    if variant == "inplace":
        return ringred.allreduce(xs, op=op, out=xs)
    if variant == "both":
        return ringred.allreduce(xs, op=op, out=ringred.empty_like(xs))
    if variant == "some-ranks":  # odd ranks bring private inputs
        return ringred.allreduce(xs if r % 2 == 0 else x.copy(), op=op)
    # every input shared; even ranks in place, odd ones to private outputs
    return ringred.allreduce(xs, op=op, out=xs if r % 2 == 0 else None)


def check_shared(x: np.ndarray, op: ringred.ReduceOp, want: np.ndarray, small: int) -> None:
    """Shared buffers (ringred.empty) as input / output / in place, on every rank or only on
    some: bit-identical to ``want`` (the result from private arrays, checked against NumPy),
    and read in place exactly when every rank's input is shared (and the message takes the
    chunked path: more than ``small`` bytes)."""
    n, r = ringred.size(), ringred.rank()
    zc = int(ringred.transport() == "shm" and x.nbytes > small)
    for variant, expect_zc in (("in", zc), ("inplace", zc), ("both", zc),
                               ("some-ranks", zc if n == 1 else 0), ("mixed-outputs", zc)):
        before = ringred.shared.zero_copy_calls()
        got = shared_allreduce(variant, x, op, r)
        calls = ringred.shared.zero_copy_calls() - before
        what = (variant, x.dtype, op, x.size)
        assert calls == (expect_zc if n > 1 else 0), (what, calls)
        assert np.array_equal(got.view(np.uint8), want.view(np.uint8)), what


def check_scales() -> None:
    n, r = ringred.size(), ringred.rank()
    for dtype in [d for d in DTYPES if d in FLOATS]:
        for count in (5, 30_001):
            x = data(r, dtype, count, 99)
            got = ringred.allreduce(x, op=ringred.Sum, prescale_factor=0.5, postscale_factor=3.0)
            want = reference("sum", dtype, count, 99, n) * 1.5
            assert close(got, want, dtype, "sum", n, count, 99) or np.allclose(
                got.astype(np.float64), want, rtol=EPS[dtype] * 8 * n, atol=EPS[dtype] * 40 * n
            ), (dtype, count)
            assert same_on_all_ranks(got)


def check_broadcast() -> None:
    n, r = ringred.size(), ringred.rank()
    for dtype in DTYPES:
        for count in sizes(n, False):
            for root in {0, n - 1}:
                x = data(r, dtype, count, 5)
                got = ringred.broadcast(x, root_rank=root)
                want = data(root, dtype, count, 5)
                assert np.array_equal(got.view(np.uint8), want.view(np.uint8))
                y = x.copy()
                ringred.broadcast(y, root, out=y)
                assert np.array_equal(y.view(np.uint8), got.view(np.uint8))


def check_allgather() -> None:
    n, r = ringred.size(), ringred.rank()
    for dtype in DTYPES:
        for rows in (0, 1, 3, 9_001):
            mine = rows + r  # first dimension differs by rank
            x = data(r, dtype, mine * 3, 11).reshape(mine, 3)
            got = ringred.allgather(x)
            want = np.concatenate([data(q, dtype, (rows + q) * 3, 11).reshape(rows + q, 3)
                                   for q in range(n)])
            assert got.shape == want.shape and np.array_equal(got.view(np.uint8),
                                                              want.view(np.uint8))


def check_reducescatter() -> None:
    n, r = ringred.size(), ringred.rank()
    shm = ringred.transport() == "shm"
    small = shm_small_bytes()
    for dtype in DTYPES:
        for opname in ("sum", "avg", "max"):
            for rows in (0, 1, n + 1, 10_007):
                x = data(r, dtype, rows * 2, 13, opname).reshape(rows, 2)
                got = ringred.reducescatter(x, op=OPS[opname])
                full = reference(opname, dtype, rows * 2, 13, n).reshape(rows, 2)
                split = ringred.collectives.split_rows(rows, n)
                lo = sum(split[:r])
                want = full[lo : lo + split[r]]
                assert got.shape == want.shape, (got.shape, want.shape)
                assert close(got.ravel(), want.ravel(), dtype, opname, n, rows * 2, 13,
                             slice(2 * lo, 2 * (lo + split[r]))), (dtype, opname, rows)
                # the same from a shared input: read in place on the chunked path
                xs = ringred.empty(x.shape, dtype)
                xs[...] = x
                before = ringred.shared.zero_copy_calls()
                got_s = ringred.reducescatter(xs, op=OPS[opname])
                calls = ringred.shared.zero_copy_calls() - before
                zc = int(shm and n > 1 and x.nbytes > small)
                assert calls == zc, ("reducescatter", dtype, opname, rows, calls)
                assert np.array_equal(got_s.view(np.uint8), got.view(np.uint8)), (
                    "shared reducescatter", dtype, opname, rows)


def body() -> None:
    full = len(sys.argv) > 1 and sys.argv[1] == "full"
    check_allreduce(full)
    check_scales()
    check_broadcast()
    check_allgather()
    check_reducescatter()


# one case each (tests/workers/cases.py): the checks of body(), quick sizes
CHECKS = {
    "allreduce": lambda: check_allreduce(False),
    "scales": check_scales,
    "broadcast": check_broadcast,
    "allgather": check_allgather,
    "reducescatter": check_reducescatter,
}

if __name__ == "__main__":
    if CASES_ENV in os.environ:
        run_cases(CHECKS)
    else:
        main(body)
