"""Hierarchical collectives on simulated hosts (``RINGRED_TEST_HOSTS``: one ``RINGRED_HOST``
label per rank, see tests/workers/cases.py): the collectives' correctness matrix and the
engine's random-order test with the two-level plan checked to be in force, mismatches, and
process sets spanning hosts.

Usage: python -m tests.workers.hier with RINGRED_TEST_CASES (tests/workers/cases.py);
``HIER_EXPECT`` in a case's environment: "1" the plan must be in force (and taken by the
allreduces), "0" it must not.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np

import ringred
from ringred import _state
from ringred._lib import lib

from . import collectives, engine
from .cases import run_cases
from .common import data, expect, same_on_all_ranks


def _calls() -> int:
    ctx = _state.current()
    n = int(lib.rr_comm_hier_calls(ctx.handle))
    if ctx.engine is not None:
        n += int(lib.rr_engine_hier_calls(ctx.engine.h))
    return n


def planned(fn: Callable[[], None], reduces: bool = True) -> Callable[[], None]:
    """fn, checking before that the plan is (or is not) in force as HIER_EXPECT says, and
    after that its allreduces took it (or did not; reduces=False: fn has none)."""

    def run() -> None:
        want = os.environ.get("HIER_EXPECT", "1") == "1"
        assert ringred.topology.hierarchical() == want, (ringred.topology.hosts(), want)
        before = _calls()
        fn()
        calls = _calls() - before
        assert (calls > 0) == (want and reduces), ("hierarchical calls", calls, want)

    return run


def check_layout() -> None:
    """local_rank / local_size / hosts follow the labels."""
    labels = os.environ["RINGRED_TEST_HOSTS"].split(",")
    r = ringred.rank()
    mine = [q for q, lab in enumerate(labels) if lab == labels[r]]
    assert ringred.local_size() == len(mine), (ringred.local_size(), mine)
    assert ringred.local_rank() == mine.index(r)
    assert ringred.topology.hosts() == len(set(labels))
    assert ringred.transport() == "mpi"  # never the flat shm transport across hosts


def check_mismatch() -> None:
    """A disagreement on one rank fails on every rank, and the library stays usable."""
    n, r = ringred.size(), ringred.rank()
    count = 100_000 + (1 if r == n - 1 else 0)
    expect(ringred.MismatchError, lambda: ringred.allreduce(np.ones(count, np.float32)),
           "count")
    dt = np.float64 if r == 0 else np.float32
    expect(ringred.MismatchError, lambda: ringred.allreduce(np.ones(50_000, dt)), "type")
    got = ringred.allreduce(np.ones(100_000, np.float32), op=ringred.Sum)
    assert (got == n).all()


def check_process_sets() -> None:
    """A process set spanning hosts gets its own two-level communicator."""
    n, r = ringred.size(), ringred.rank()
    labels = os.environ["RINGRED_TEST_HOSTS"].split(",")
    members = list(range(n - 1))  # every host but the last loses at most one rank
    ps = ringred.add_process_set(members)
    if r in members:
        ctx = ps._context()
        sub = [labels[q] for q in members]
        spans = len(set(sub)) > 1 and max(sub.count(lab) for lab in sub) > 1
        assert bool(lib.rr_comm_hierarchical(ctx.handle)) == spans, (sub, spans)
        for dtype in (np.dtype(np.float64), np.dtype(np.int32)):
            x = data(r, dtype, 70_001, 5)
            got = ringred.allreduce(x, op=ringred.Sum, process_set=ps)
            want = sum(data(q, dtype, 70_001, 5).astype(np.float64 if dtype.kind == "f"
                                                         else dtype) for q in members)
            if dtype.kind == "f":
                assert np.allclose(got, want, rtol=1e-12, atol=1e-12)
            else:
                assert np.array_equal(got, want)
            h = ringred.allreduce_async(x, op=ringred.Max, name="ps.max", process_set=ps)
            assert np.array_equal(ringred.synchronize(h), np.max([data(q, dtype, 70_001, 5)
                                                                  for q in members], axis=0))
        assert lib.rr_comm_hier_calls(ctx.handle) > 0 or not spans
    assert same_on_all_ranks(ringred.allreduce(np.full(80_000, r, np.float32)))
    ringred.remove_process_set(ps)


def check_setting_errors() -> None:
    """RINGRED_HOST set on some ranks only, or a bad RINGRED_HIERARCHICAL: every rank fails
    to create the communicator, with the reason; the existing one stays usable."""
    from mpi4py import MPI

    r = ringred.rank()
    comm = MPI.COMM_WORLD
    saved = dict(os.environ)
    try:
        if r == 0:
            del os.environ["RINGRED_HOST"]
        expect(ringred.RingredError, lambda: _state.Context(comm),
               "RINGRED_HOST is set on some ranks but not on others")
        os.environ.clear()
        os.environ.update(saved)
        os.environ["RINGRED_HIERARCHICAL"] = "maybe" if r == 1 else "auto"
        expect(ringred.RingredError, lambda: _state.Context(comm), "RINGRED_HIERARCHICAL")
    finally:
        os.environ.clear()
        os.environ.update(saved)
    assert (ringred.allreduce(np.ones(100_000, np.float32), op=ringred.Sum) == ringred.size()
            ).all()


CHECKS = {
    "setting-errors": check_setting_errors,
    **{f"collectives-{k}": planned(v, k in ("allreduce", "scales", "broadcast"))
       for k, v in collectives.CHECKS.items()},
    "engine-main": planned(engine.body_main),
    "layout": check_layout,
    "mismatch": planned(check_mismatch),
    "process-sets": check_process_sets,
    "flat": planned(lambda: collectives.check_allreduce(False)),
}

def midcall(victim: int) -> None:
    """Large hierarchical allreduces; the victim SIGKILLs itself from a timer thread, most
    likely inside one of the steps (the survivors wait in a child communicator).  Prints
    ``PID``, ``KILLED`` and ``RANK <r> <exception> <time> <message>`` like deadpeer."""
    import signal
    import threading
    import time

    from .cases import set_test_host

    set_test_host()
    ringred.init()
    r = ringred.rank()
    print(f"PID {r} {os.getpid()}", flush=True)
    assert ringred.topology.hierarchical()
    x = np.ones(4 << 20, np.float32)
    ringred.allreduce(x, op=ringred.Sum)
    if r == victim:
        def die() -> None:
            print(f"KILLED {time.time():.6f}", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)

        threading.Timer(0.3, die).start()
    try:
        for _ in range(100_000):
            ringred.allreduce(x, op=ringred.Sum, out=x)
    except ringred.RingredError as exc:
        from .deadpeer import report

        report(r, exc)
    print(f"RANK {r} FINISHED (never noticed)", flush=True)
    os._exit(5)


if __name__ == "__main__":
    import sys

    if len(sys.argv) > 2 and sys.argv[1] == "midcall":
        midcall(int(sys.argv[2]))
    else:
        run_cases(CHECKS)
