"""The background engine: named tensors submitted in a different random order on every rank,
checked against NumPy references; mismatches, duplicates, grouped allreduce, steady state.

Modes (argv[1]): main (default), stall-warn, stall-shutdown, join, timeline, fault, torch,
shutdown.
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings

import numpy as np

import ringred

from .cases import ENV as CASES_ENV
from .cases import run_cases
from .collectives import close, reference
from .common import DTYPES, data, expect, main

OPS = {"sum": ringred.Sum, "avg": ringred.Average, "min": ringred.Min, "max": ringred.Max}


def random_order(items: list, seed: int) -> list:
    rng = np.random.default_rng([seed, ringred.rank()])
    idx = rng.permutation(len(items))
    return [items[i] for i in idx]


# ---------------------------------------------------------------------------- main checks
def many_allreduces(seed: int, count_tensors: int = 240) -> None:
    """Hundreds of named tensors, mixed dtypes / ops / sizes, different order per rank."""
    n, r = ringred.size(), ringred.rank()
    rng = np.random.default_rng(seed)  # same plan on every rank
    plan = []
    for i in range(count_tensors):
        dt = DTYPES[int(rng.integers(len(DTYPES)))]
        op = list(OPS)[int(rng.integers(len(OPS)))]
        size = int(rng.choice([1, 3, 17, 256, 1000, 4099, 70_000]))
        plan.append((f"grad/{i}", dt, size, op, seed * 1000 + i))
    inputs = {nm: data(r, dt, size, sd, op) for nm, dt, size, op, sd in plan}
    handles = {}
    for nm, _dt, _size, op, _sd in random_order(plan, seed):
        handles[nm] = ringred.allreduce_async(inputs[nm], op=OPS[op], name=nm)
    for nm, dt, size, op, sd in random_order(plan, seed + 1):
        got = handles[nm].wait()
        want = reference(op, dt, size, sd, n)
        assert got.dtype == dt and got.shape == (size,), (nm, got.dtype, got.shape)
        assert close(got, want, dt, op, n, size, sd), (nm, dt, op, got[:5], want[:5])
        assert handles[nm].done() and ringred.poll(handles[nm])


def scaled_and_inplace(seed: int) -> None:
    n, r = ringred.size(), ringred.rank()
    x = data(r, np.dtype(np.float64), 1000, seed)
    want = np.sum([data(q, np.dtype(np.float64), 1000, seed) for q in range(n)], axis=0)
    h = ringred.allreduce_async(x, op=ringred.Sum, name="scaled", prescale_factor=0.5,
                                postscale_factor=3.0)
    assert np.allclose(h.wait(), want * 1.5)
    y = x.copy()
    h = ringred.allreduce_async(y, op=ringred.Sum, name="inplace", out=y)
    assert h.wait() is y and np.allclose(y, want)
    # non-contiguous in, 2-D shape kept
    m = data(r, np.dtype(np.float32), 60, seed).reshape(6, 10)[:, ::2]
    got = ringred.synchronize(ringred.allreduce_async(m, op=ringred.Max, name="strided"))
    want_m = np.max([data(q, np.dtype(np.float32), 60, seed).reshape(6, 10)[:, ::2]
                     for q in range(n)], axis=0)
    assert got.shape == (6, 5) and np.array_equal(got, want_m)


def body_torch() -> None:
    """torch CPU tensors through the engine (importing torch is slow: its own run)."""
    import torch

    warm_up()
    n, r = ringred.size(), ringred.rank()
    t = torch.arange(12, dtype=torch.float32).reshape(3, 4) + r
    got = ringred.allreduce_async(t, name="torch").wait()
    assert isinstance(got, torch.Tensor) and got.shape == (3, 4)
    assert torch.allclose(got, torch.arange(12, dtype=torch.float32).reshape(3, 4) + (n - 1) / 2)
    tb = torch.ones(5, dtype=torch.bfloat16) * (r + 1)
    gb = ringred.allreduce_async(tb, op=ringred.Sum, name="torch.bf16").wait()
    assert gb.dtype == torch.bfloat16 and float(gb[0]) == n * (n + 1) / 2
    g = torch.full((4,), float(r))
    assert ringred.allreduce_async(g, op=ringred.Sum, name="torch.inplace", out=g).wait() is g
    assert (g == n * (n - 1) / 2).all()
    parts = ringred.allgather_async(torch.ones(r + 1, 2), name="torch.gather").wait()
    assert isinstance(parts, torch.Tensor) and parts.shape == (n * (n + 1) // 2, 2)


def other_collectives(seed: int) -> None:
    """broadcast / allgather / reducescatter through the engine, interleaved randomly."""
    n, r = ringred.size(), ringred.rank()
    items = []
    for i in range(12):
        items.append(("bcast", i))
        items.append(("gather", i))
        items.append(("rs", i))
    handles = {}
    for kind, i in random_order(items, seed):
        nm = f"{kind}/{i}"
        if kind == "bcast":
            x = np.full((i + 1, 3), r * 10 + i, np.int32)
            handles[nm] = ringred.broadcast_async(x, root_rank=i % n, name=nm)
        elif kind == "gather":
            x = np.full((r + i % 3, 2), r, np.float32)  # first dimension differs by rank
            handles[nm] = ringred.allgather_async(x, name=nm)
        else:
            x = np.arange((n + i) * 4, dtype=np.float64).reshape(n + i, 4) * (r + 1)
            handles[nm] = ringred.reducescatter_async(x, op=ringred.Sum, name=nm)
    for kind, i in random_order(items, seed + 7):
        nm = f"{kind}/{i}"
        got = handles[nm].wait()
        if kind == "bcast":
            assert got.shape == (i + 1, 3) and (got == (i % n) * 10 + i).all(), (nm, got)
        elif kind == "gather":
            want = np.concatenate([np.full((q + i % 3, 2), q, np.float32) for q in range(n)])
            assert got.shape == want.shape and np.array_equal(got, want), (nm, got)
        else:
            full = np.arange((n + i) * 4, dtype=np.float64).reshape(n + i, 4) * n * (n + 1) / 2
            rows = ringred.collectives.split_rows(n + i, n)
            lo = sum(rows[:r])
            assert np.allclose(got, full[lo:lo + rows[r]]), (nm, got)
    # broadcast in place
    w = np.full(7, float(r))
    assert ringred.broadcast_async(w, root_rank=n - 1, name="bcast.inplace", out=w).wait() is w
    assert (w == n - 1).all()


def grouped(seed: int) -> None:
    n, r = ringred.size(), ringred.rank()
    xs = [np.full(s, r + 1, dt) for s, dt in ((5, np.float32), (300, np.float64),
                                             (2, np.float32), (70_000, np.float32))]
    got = ringred.grouped_allreduce(xs, op=ringred.Sum, name="grp")
    assert len(got) == 4
    for g, x in zip(got, xs, strict=True):
        assert g.dtype == x.dtype and g.shape == x.shape and (g == n * (n + 1) / 2).all()
    # async, twice (the second time from the response cache), unnamed
    for _ in range(3):
        h = ringred.grouped_allreduce_async([np.ones(3) * r, np.ones((2, 2)) * r])
        a, b = h.wait()
        assert (a == (n - 1) / 2).all() and b.shape == (2, 2) and (b == (n - 1) / 2).all()


def mismatches() -> None:
    """Every rank raises MismatchError naming the tensor; the engine stays usable."""
    n, r = ringred.size(), ringred.rank()
    if n < 2:
        return
    odd = r == n - 1
    x = np.ones((3 if odd else 2, 3), np.float32)
    h = ringred.allreduce_async(x, name="mm.shape")
    expect(ringred.MismatchError, h.wait, "mm.shape", "shapes", "[2, 3]", "[3, 3]",
           f"rank {n - 1} sent [3, 3]")
    expect(ringred.MismatchError,
           ringred.allreduce_async(np.ones(4, np.float64 if odd else np.float32),
                                   name="mm.dtype").wait, "mm.dtype", "float32", "float64")
    expect(ringred.MismatchError,
           ringred.allreduce_async(np.ones(4), op=ringred.Max if odd else ringred.Min,
                                   name="mm.op").wait, "mm.op", "max", "min")
    expect(ringred.MismatchError,
           ringred.broadcast_async(np.ones(4), root_rank=1 if odd else 0,
                                   name="mm.root").wait, "mm.root", "root")
    expect(ringred.MismatchError,
           ringred.allgather_async(np.ones((2, 3 if odd else 4)), name="mm.gather").wait,
           "mm.gather", "allgather")
    # a cached name resubmitted with a new shape on one rank only
    for _ in range(2):
        ringred.allreduce_async(np.ones(8), name="mm.cached").wait()
    h = ringred.allreduce_async(np.ones(9 if odd else 8), name="mm.cached")
    expect(ringred.MismatchError, h.wait, "mm.cached", "[8]", "[9]")
    # and then consistently with the new shape on every rank: fine again
    got = ringred.allreduce_async(np.ones(9), op=ringred.Sum, name="mm.cached").wait()
    assert (got == n).all()
    got = ringred.allreduce_async(np.ones(6), op=ringred.Sum, name="after.mismatch").wait()
    assert (got == n).all()


def duplicates() -> None:
    """A name already in flight: DuplicateNameError (a ValueError) at once."""
    if ringred.size() < 2:
        return
    x = np.ones(10)
    if ringred.rank() == 0:
        h = ringred.allreduce_async(x, name="dup")  # cannot finish before rank 1 submits
        e = expect(ValueError, lambda: ringred.allreduce_async(x, name="dup"), "dup",
                   "already in flight")
        assert isinstance(e, ringred.DuplicateNameError)
        ringred.barrier()
        h.wait()
    else:
        ringred.barrier()
        ringred.allreduce_async(x, name="dup").wait()
    ringred.allreduce_async(x, name="dup").wait()  # free again once done


def steady_state(iters: int) -> None:
    """4 KiB allreduce_async + wait in a loop, served by the response cache."""
    n = ringred.size()
    eng = ringred._state.current().get_engine()
    x = np.ones(1024, np.float32)
    ringred.allreduce_async(x, op=ringred.Sum, name="steady").wait()
    before = eng.stats()
    for i in range(iters):
        got = ringred.allreduce_async(x, op=ringred.Sum, name="steady").wait()
        if i % 500 == 0:
            assert (got == n).all()
    after = eng.stats()
    ringred.barrier()  # nobody starts the next (slow) cycles before everybody has read stats
    slow = after["slow_cycles"] - before["slow_cycles"]
    if os.environ.get("RINGRED_CACHE_CAPACITY", "") != "0":
        assert slow == 0, (slow, before, after)  # steady state: no names on the wire
        assert after["cycles"] - before["cycles"] <= 2 * iters + 10
    # unnamed: counter names, same order on every rank
    for _ in range(50):
        assert (ringred.allreduce_async(x, op=ringred.Sum).wait() == n).all()


def overlap() -> None:
    """The background thread communicates while the caller computes: a rank that sleeps
    after submitting does not hold the others back until it waits."""
    n, r = ringred.size(), ringred.rank()
    if n < 2:
        return
    x = np.ones(1000)
    for i in range(3):  # right after other waits (a driver's lease) and without
        t0 = time.monotonic()
        h = ringred.allreduce_async(x, op=ringred.Sum, name=f"overlap.{i}")
        if r == 0:
            time.sleep(0.6)  # "computing"
            assert (h.wait() == n).all()
        else:
            assert (h.wait() == n).all()
            assert time.monotonic() - t0 < 0.45, time.monotonic() - t0
        ringred.barrier()
        time.sleep(0.01 * i)


def wait_timeout() -> None:
    """wait(timeout) raises TimeoutError and the operation stays pending."""
    n, r = ringred.size(), ringred.rank()
    if n < 2:
        return
    if r == 0:
        h = ringred.allreduce_async(np.ones(3), op=ringred.Sum, name="late")
        expect(TimeoutError, lambda: h.wait(timeout=0.2), "late")
        assert not h.done()
        ringred.barrier()
    else:
        ringred.barrier()
        h = ringred.allreduce_async(np.ones(3), op=ringred.Sum, name="late")
    assert (h.wait(timeout=60) == n).all()


def shared_buffers(seed: int) -> None:
    """allreduce_async on arrays from ringred.empty: large ones go straight from the callers'
    shared buffers, small ones through the (shared) fusion buffer; with the shm transport
    both are read in place, and the results match private arrays bit for bit."""
    n, r = ringred.size(), ringred.rank()
    sizes = [7, 300, 4099, 70_000, 300_000]
    xs = {}
    for i, size in enumerate(sizes):
        x = ringred.empty(size, np.float32)
        x[:] = data(r, np.dtype(np.float32), size, seed + i)
        xs[f"shared/{i}"] = x
    want = {nm: ringred.allreduce(x.copy(), op=ringred.Sum) for nm, x in xs.items()}
    before = ringred.shared.zero_copy_calls()
    handles = {nm: ringred.allreduce_async(xs[nm], op=ringred.Sum, name=nm, out=xs[nm])
               for nm in random_order(list(xs), seed)}
    for nm, h in handles.items():
        assert np.array_equal(h.wait().view(np.uint8), want[nm].view(np.uint8)), nm
    used = ringred.shared.zero_copy_calls() - before
    if ringred.transport() == "shm" and n > 1:
        # at least the two lone tensors above RINGRED_FUSION_MAX_TENSOR
        assert used >= 2, used
    else:
        assert used == 0, used


def zero_sized() -> None:
    n = ringred.size()
    got = ringred.allreduce_async(np.ones((0, 3), np.float32), name="empty").wait()
    assert got.shape == (0, 3)
    assert (ringred.allreduce_async(np.float64(2.0), op=ringred.Sum, name="scalar").wait()
            == 2.0 * n)


def body_main() -> None:
    seed = int(os.environ.get("SEED", "11"))
    many_allreduces(seed)
    scaled_and_inplace(seed)
    other_collectives(seed)
    grouped(seed)
    mismatches()
    duplicates()
    wait_timeout()
    shared_buffers(seed)
    zero_sized()
    many_allreduces(seed + 1, 120)  # again: now partly from the cache
    steady_state(int(os.environ.get("ITERS", "2000")))
    overlap()
    ringred.barrier()


# ---------------------------------------------------------------------------- other modes
def body_stall_warn() -> None:
    """RINGRED_STALL_CHECK_SECONDS=1: rank 0 warns, naming the rank that is late."""
    warm_up()
    n, r = ringred.size(), ringred.rank()
    late = n - 1
    if r == late:
        time.sleep(2.5)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = ringred.allreduce_async(np.ones(4), op=ringred.Sum, name="slow.tensor").wait()
    assert (got == n).all()
    if r == 0:
        msgs = [str(w.message) for w in caught if issubclass(w.category, ringred.StallWarning)]
        assert msgs, "no stall warning on rank 0"
        assert "slow.tensor" in msgs[0] and f"rank {late}" in msgs[0], msgs[0]
    ringred.barrier()


def body_stall_shutdown() -> None:
    """RINGRED_STALL_SHUTDOWN_SECONDS=2: the waiting ranks raise StallError, no hang."""
    warm_up()
    n, r = ringred.size(), ringred.rank()
    if r != n - 1:
        h = ringred.allreduce_async(np.ones(4), name="never")
        t0 = time.monotonic()
        expect(ringred.StallError, h.wait, "never", f"rank {n - 1}")
        assert time.monotonic() - t0 < 30
    ringred.barrier()
    got = ringred.allreduce_async(np.ones(4), op=ringred.Sum, name="after.stall").wait()
    assert (got == n).all()
    # a cached tensor whose last rank stalls: the hit is invalidated, then it errors
    for _ in range(2):
        ringred.allreduce_async(np.ones(4), name="cached.stall").wait()
    if r != n - 1:
        expect(ringred.StallError, ringred.allreduce_async(np.ones(4), name="cached.stall").wait,
               "cached.stall")
    ringred.barrier()


def body_join() -> None:
    """Uneven batch counts: joined ranks contribute zeros, Average divides by the size."""
    warm_up()
    n, r = ringred.size(), ringred.rank()
    batches = 3 + 2 * r  # the last rank has the most
    for b in range(batches):
        x = np.full(100, float(r + 1), np.float32)
        got = ringred.allreduce_async(x, name=f"batch.w.{b}").wait()
        present = [q for q in range(n) if b < 3 + 2 * q]
        want = sum(q + 1 for q in present) / n
        assert np.allclose(got, want), (b, got[0], want)
        big = np.full(70_000, float(r + 1), np.float64)
        got = ringred.allreduce_async(big, op=ringred.Sum, name=f"batch.big.{b}").wait()
        assert np.allclose(got, sum(q + 1 for q in present))
        ints = np.full(5, 4 * (r + 1), np.int32)
        got = ringred.grouped_allreduce([ints, x], name=f"batch.grp.{b}")
        assert (got[0] == sum(4 * (q + 1) for q in present) // n).all(), got[0]
    last = ringred.join()
    assert last == n - 1, last
    # broadcast while some rank has joined: an error on the ranks that asked
    if n > 1:
        if r == 0:
            last = ringred.join()
        else:
            expect(ringred.UnsupportedError,
                   ringred.broadcast_async(np.ones(3), 0, name="bcast.join").wait, "joined")
            last = ringred.join()
        assert 1 <= last < n and len(set(ringred.allgather_object(last))) == 1, last
    # and everything works again afterwards
    got = ringred.allreduce_async(np.ones(3), op=ringred.Sum, name="after.join").wait()
    assert (got == n).all()


def body_timeline() -> None:
    path = sys.argv[2]
    n = ringred.size()
    ringred.start_timeline(path)
    hs = [ringred.allreduce_async(np.ones(s, np.float32), op=ringred.Sum, name=f"tl.{i}")
          for i, s in enumerate([10, 20, 30, 100_000])]
    for h in hs:
        assert (h.wait() == n).all()
    ringred.broadcast_async(np.ones(3), 0, name="tl.bcast").wait()
    ringred.stop_timeline()
    ringred.barrier()
    if ringred.rank() == 0:
        with open(path) as f:
            events = json.load(f)
        names = {e["name"] for e in events}
        tr = ringred.transport()
        for want in ("NEGOTIATE", "QUEUE", "MEMCPY_IN_FUSION", f"ALLREDUCE ({tr})",
                     f"BROADCAST ({tr})",
                     "MEMCPY_OUT_FUSION", "CYCLE_START", "thread_name"):
            assert want in names, (want, sorted(names))
        tensors = {e["args"]["name"] for e in events if e["name"] == "thread_name"}
        assert {"tl.0", "tl.3", "tl.bcast"} <= tensors, tensors
        spans = [e for e in events if e.get("ph") == "X"]
        assert all(e["dur"] >= 0 and e["ts"] >= 0 for e in spans)


def body_fault() -> None:
    """RINGRED_TEST_FAULT=boom:1: rank 1 fails locally; every rank reports rank 1's words."""
    n = ringred.size()
    assert (ringred.allreduce_async(np.ones(3), op=ringred.Sum, name="before").wait() == n).all()

    def boom() -> None:
        # rank 1 fails as soon as it handles its own request, so on a slow rank the engine
        # may already have stopped when it submits: the error then comes from the submission
        ringred.allreduce_async(np.ones(3), name="boom").wait()

    expect(ringred.RingredError, boom, "rank 1", "injected fault")
    # later calls report the same first cause, not a generic "shut down"
    expect(ringred.RingredError, lambda: ringred.allreduce_async(np.ones(3), name="later"),
           "injected fault")
    # the synchronous path has its own communicator and still works
    assert (ringred.allreduce(np.ones(3), op=ringred.Sum) == n).all()


def body_shutdown() -> None:
    """Handles still pending when ringred shuts down fail with a clear error."""
    warm_up()
    n, r = ringred.size(), ringred.rank()
    h = ringred.allreduce_async(np.ones(3), name=f"orphan.{r}")  # nobody else sends it
    if n == 1:
        h.wait()
        ringred.shutdown()
        ringred.init()
    elif r == 0:
        ringred.shutdown()  # collective for the engine: the others' engines stop too
        expect(ringred.RingredError, h.wait, "shut down")
        ringred.init()
    else:
        expect(ringred.RingredError, h.wait, "shut down", "rank 0")
        expect(ringred.RingredError, lambda: ringred.allreduce_async(np.ones(1), name="x"),
               "shut down")
        ringred.shutdown()
        ringred.init()
    # a new engine after re-initialization
    got = ringred.allreduce_async(np.ones(2), op=ringred.Sum, name="reborn").wait()
    assert (got == n).all()


def warm_up() -> None:
    """Start the engine on every rank (its creation is collective)."""
    ringred.allreduce_async(np.ones(1), name="warm.up").wait()


MODES = {"main": body_main, "stall-warn": body_stall_warn,
         "stall-shutdown": body_stall_shutdown, "join": body_join, "timeline": body_timeline,
         "fault": body_fault, "torch": body_torch, "shutdown": body_shutdown}

if __name__ == "__main__":
    if CASES_ENV in os.environ:  # many modes in one run, each a case (tests/workers/cases.py)
        run_cases(MODES)
    else:
        main(MODES[sys.argv[1] if len(sys.argv) > 1 else "main"])
