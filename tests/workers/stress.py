"""Hundreds of back-to-back collectives of varied sizes, fresh random data every time, every
result checked against NumPy: catches slot-reuse races in the transports.

Usage: python -m tests.workers.stress [iterations]
Shared buffers (ringred.empty) are reused across iterations as inputs, outputs and in place.
Sizes straddle RINGRED_SHM_SMALL_BYTES and span several RINGRED_SHM_SLOT_BYTES chunks when
the test sets them small (4 KiB and 16 KiB).
"""

from __future__ import annotations

import sys

import numpy as np

import ringred

from .common import main

# elements (int32 / float32: 4 bytes each): around a 4 KiB small threshold, one chunk,
# several 16 KiB chunks, and odd sizes that leave ragged slices
COUNTS = [1, 3, 1000, 1023, 1024, 1025, 1100, 4095, 4096, 4097, 9000, 20_011, 33_333]


def inputs(it: int, n: int, count: int, dtype: np.dtype) -> list[np.ndarray]:
    """Every rank's input of iteration ``it`` (each rank can regenerate all of them)."""
    out = []
    for r in range(n):
        rng = np.random.default_rng([it, r, count])
        out.append(rng.integers(-1000, 1000, count).astype(dtype))
    return out


def body() -> None:
    n, r = ringred.size(), ringred.rank()
    iters = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    pick = np.random.default_rng(12345)  # the same schedule on every rank
    # shared buffers, reused by every iteration: a rank refills its input for the next call
    # while a slow peer may still be finishing the last one
    sx = {dt: ringred.empty(max(COUNTS), dt) for dt in (np.dtype(np.float32), np.dtype(np.int32))}
    sy = {dt: ringred.empty(max(COUNTS), dt) for dt in sx}
    for it in range(iters):
        count = int(pick.choice(COUNTS))
        kind = int(pick.integers(0, 9))
        dtype = np.dtype(np.float32 if pick.integers(0, 2) else np.int32)
        xs = inputs(it, n, count, dtype)
        x = xs[r]
        what = (it, kind, count, dtype)
        if kind == 0:
            got = ringred.allreduce(x, op=ringred.Sum)
            assert np.array_equal(got, np.sum(xs, axis=0, dtype=dtype)), what
        elif kind == 1:
            y = x.copy()
            ringred.allreduce(y, op=ringred.Max, out=y)
            assert np.array_equal(y, np.max(xs, axis=0)), what
        elif kind == 2:
            root = it % n
            got = ringred.broadcast(x, root_rank=root)
            assert np.array_equal(got, xs[root]), what
        elif kind == 3:
            mine = x[: max(0, count - 7 * r)]
            got = ringred.allgather(mine)
            want = np.concatenate([xs[q][: max(0, count - 7 * q)] for q in range(n)])
            assert np.array_equal(got, want), what
        elif kind == 4:
            src = x
            if it % 2:  # from a reused shared input (read in place by the peers)
                src = sx[dtype][:count]
                src[:] = x
            got = ringred.reducescatter(src, op=ringred.Sum)
            split = ringred.collectives.split_rows(count, n)
            lo = sum(split[:r])
            want = np.sum(xs, axis=0, dtype=dtype)[lo : lo + split[r]]
            assert np.array_equal(got, want), what
        elif kind >= 6:
            # shared input; output: private (6), in place (7), shared (8); every third
            # iteration odd ranks go in place while even ones don't
            xs_ = sx[dtype][:count]
            xs_[:] = x
            out = {6: None, 7: xs_, 8: sy[dtype][:count]}[kind]
            if it % 3 == 0 and r % 2:
                out = xs_
            got = ringred.allreduce(xs_, op=ringred.Sum, out=out)
            assert np.array_equal(got, np.sum(xs, axis=0, dtype=dtype)), what
        else:
            xf = x.astype(np.float64)
            got = ringred.allreduce(xf, op=ringred.Average, prescale_factor=2.0)
            want = np.sum([a.astype(np.float64) * 2.0 for a in xs], axis=0) / n
            assert np.allclose(got, want, rtol=1e-12, atol=1e-9), what


if __name__ == "__main__":
    main(body)
