"""ringred.empty / zeros / empty_like: what the arrays are, how long they live, what happens
when the arena is full or absent, and that errors still reach every rank.

Usage: python -m tests.workers.shared [full|none|tiny]
  full: the default arena; none: RINGRED_SHM_ARENA_BYTES=0 or the MPI transport (ordinary
  arrays); tiny: a 4 MiB arena (larger arrays fall back with a ResourceWarning)
"""

from __future__ import annotations

import gc
import sys
import warnings

import numpy as np

import ringred
from ringred import shared

from .common import expect, main


def addr(a: np.ndarray) -> int:
    return a.__array_interface__["data"][0]


def check_arrays(mode: str) -> None:
    a = ringred.empty((3, 5), np.float64)
    assert a.shape == (3, 5) and a.dtype == np.float64 and a.flags.c_contiguous
    assert a.flags.writeable
    if mode == "full" and ringred.transport() == "shm":
        assert addr(a) % 64 == 0
    z = ringred.zeros(7, np.int16)
    assert z.shape == (7,) and not z.any()
    e = ringred.empty_like(a)
    assert e.shape == a.shape and e.dtype == a.dtype
    assert ringred.empty(0).size == 0 and ringred.empty((2, 0), np.int8).shape == (2, 0)
    expect(ValueError, lambda: ringred.empty((-1, 2)), "negative")


def check_reduce(mode: str) -> None:
    n, r = ringred.size(), ringred.rank()
    x = ringred.empty(100_000, np.float32)
    x[:] = np.arange(x.size, dtype=np.float32) * (r + 1)
    want = np.arange(x.size, dtype=np.float32) * (n * (n + 1) // 2)
    before = shared.zero_copy_calls()
    assert np.array_equal(ringred.allreduce(x, op=ringred.Sum), want)
    ringred.allreduce(x, op=ringred.Sum, out=x)
    assert np.array_equal(x, want)
    used = shared.zero_copy_calls() - before
    in_place = mode == "full" and ringred.transport() == "shm" and n > 1
    assert used == (2 if in_place else 0), (mode, used)
    if n == 1:
        return
    # a mismatch is still an error on every rank, and the buffer is left as it was
    y = ringred.empty(50_000 + (r == 0), np.float32)
    y[:] = 1
    expect(ringred.MismatchError, lambda: ringred.allreduce(y, op=ringred.Sum, out=y), "count")
    assert (y == 1).all()


def check_lifetime() -> None:
    a = ringred.empty(1 << 16, np.uint8)
    where = addr(a)
    view = a[100:200]
    del a
    gc.collect()
    b = ringred.empty(1 << 16, np.uint8)  # the view keeps the first block alive
    assert addr(b) != where
    view[:] = 7
    assert (view == 7).all()
    del view, b
    gc.collect()


def check_tiny_arena() -> None:
    small = ringred.empty(1 << 18, np.uint8)  # fits in 4 MiB
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        big = ringred.empty(8 << 20, np.uint8)
    assert big.nbytes == 8 << 20
    assert any(issubclass(x.category, ResourceWarning) and "arena" in str(x.message) for x in w)
    x = ringred.empty(100_000, np.float32)  # 400 KB: still room
    x[:] = 1
    before = shared.zero_copy_calls()
    ringred.allreduce(x, op=ringred.Sum, out=x)
    assert shared.zero_copy_calls() == before + 1
    del small


def body() -> None:
    mode = sys.argv[1] if len(sys.argv) > 1 else "full"
    check_arrays(mode)
    check_reduce("full" if mode == "tiny" else mode)
    check_lifetime()
    if mode == "tiny" and ringred.size() > 1:
        check_tiny_arena()
    keep = ringred.zeros(1000, np.float64)
    ringred.shutdown()
    keep += 1  # still ordinary memory after shutdown
    assert keep.sum() == 1000
    ringred.init()


if __name__ == "__main__":
    main(body)
