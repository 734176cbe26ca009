"""Pooled result arrays (ringred/_pool.py), the torch fast path and the engine's phase
counters: one process for the pool itself, 2-3 ranks through the engine."""

import sys

import numpy as np
import pytest

from ringred._pool import ResultPool

from .mpi import run_mpi


def test_pool_reuses_only_dropped_arrays():
    pool = ResultPool(limit=1 << 30, min_bytes=1024)
    x = np.ones(10_000, np.float32)
    a, b = pool.take(x), pool.take(x)
    assert a is not b and not np.shares_memory(a, b)
    ida = id(a)
    del a
    c = pool.take(x)
    assert id(c) == ida and pool.reused == 1  # dropped: handed out again
    view = c[5:]
    del c
    d = pool.take(x)  # a view of the old array is held: not reused
    assert not np.shares_memory(d, view) and not np.shares_memory(d, b)
    mv = memoryview(d)
    del d
    e = pool.take(x)  # an exported buffer holds it too
    assert not np.shares_memory(e, np.asarray(mv)) and not np.shares_memory(e, view)
    assert e.shape == x.shape and e.dtype == x.dtype and e.flags.c_contiguous


def test_pool_limits():
    x = np.ones(10_000, np.float32)
    small = ResultPool(limit=1 << 30, min_bytes=1 << 20)
    a = small.take(x)
    del a
    small.take(x)
    assert small.reused == 0  # below min_bytes: never pooled
    off = ResultPool(limit=0, min_bytes=0)
    off.take(x)
    off.take(x)
    assert off.reused == 0
    capped = ResultPool(limit=x.nbytes, min_bytes=0)  # room for one array
    held = [capped.take(x) for _ in range(3)]
    del held
    a1 = capped.take(x)  # the one pooled array
    a2 = capped.take(x)  # a fresh one, not pooled (the pool is full)
    assert capped.reused == 1 and not np.shares_memory(a1, a2)
    del a2
    a3 = capped.take(x)
    assert capped.reused == 1 and not np.shares_memory(a1, a3)


def test_pool_with_torch():
    torch = pytest.importorskip("torch")
    pool = ResultPool(limit=1 << 30, min_bytes=0)
    x = np.ones(1000, np.float32)
    t = torch.from_numpy(pool.take(x))
    a = pool.take(x)
    assert not np.shares_memory(a, t.numpy())
    del t, a
    pool.take(x)
    assert pool.reused == 1
    assert sys.modules.get("torch") is torch


@pytest.mark.parametrize("n", [2, 3])
def test_pooled_results_numpy(n):
    run_mpi(n, "results_pool", "numpy", timeout=180)


def test_torch_fast_path():
    pytest.importorskip("torch")
    run_mpi(2, "results_pool", "torch", timeout=180)


def test_pool_serves_many_tensors_of_one_shape():
    """Six gradients of one shape, a step's results held while the next is submitted: after
    two steps every result is a reused array, and none is handed out twice while held."""
    pool = ResultPool(limit=1 << 30, min_bytes=0)
    x = np.ones(1000, np.float32)
    held: list = []
    for step in range(6):
        before = pool.reused
        res = [pool.take(x) for _ in range(6)]
        ids = {id(r) for r in res} | {id(h) for h in held}
        assert len(ids) == len(res) + len(held)  # all distinct, none of the held ones
        if step >= 2:
            assert pool.reused - before == 6
        held = res
    assert pool._bytes == 12 * x.nbytes
