"""Engine creation fails on one rank: every rank must raise naming that rank's reason, and
then a synchronous collective (and, with the fault gone, the engine) still works.

Usage: python -m tests.workers.engine_create
The engine is tried on the shared-memory transport, then on MPI.  Rank 0 gets
RINGRED_TIMELINE=<a path in a directory that does not exist> (rank 0 writes the timeline);
the last rank gets the allocation test hook (RINGRED_TEST_FAULT=engine.create:r).
"""

from __future__ import annotations

import os
import time

import numpy as np

import ringred


def expect_failure(r: int, size: int, bad: int, needle: str) -> None:
    t0 = time.monotonic()
    try:
        ringred.synchronize(ringred.allreduce_async(np.ones(4, np.float32), name="first"))
    except ringred.RingredError as exc:
        took = time.monotonic() - t0
        assert f"rank {bad}: " in str(exc) and needle in str(exc), (r, str(exc))
        assert took < 30, took
        print(f"RANK {r} CREATION-FAILED {took:.3f} {exc}", flush=True)
    else:
        raise AssertionError(f"rank {r}: engine creation succeeded")
    # the process's own communicator is unaffected
    out = ringred.allreduce(np.full(8, r + 1.0), op=ringred.Sum)
    assert np.all(out == size * (size + 1) / 2), out


def main() -> None:
    ringred.init()
    r, n = ringred.rank(), ringred.size()
    missing = "/nonexistent-ringred-dir/t.json"
    for transport in ("shm", "mpi"):  # the engine's own communicator
        os.environ["RINGRED_TRANSPORT"] = transport
        if r == 0:
            os.environ["RINGRED_TIMELINE"] = missing
        expect_failure(r, n, 0, "RINGRED_TIMELINE")
        os.environ.pop("RINGRED_TIMELINE", None)
        if r == n - 1:
            os.environ["RINGRED_TEST_FAULT"] = f"engine.create:{r}"
        expect_failure(r, n, n - 1, "injected fault")
        os.environ.pop("RINGRED_TEST_FAULT", None)
    # with the faults gone the engine starts on every rank
    h = ringred.allreduce_async(np.full(4, 1.0), name="after", op=ringred.Sum)
    out = ringred.synchronize(h)
    assert np.all(out == n), out
    print(f"RANK {r} OK", flush=True)


if __name__ == "__main__":
    main()
