"""Many cases in one ``mpiexec`` run, each reported on its own line (tests/mpi.py
``run_mpi_cases`` turns the lines into one pytest result per case).

The case list comes from ``RINGRED_TEST_CASES``: a JSON list of ``{"name", "check", "env"}``.
For each case every rank sets the case's environment (on top of the job's), initializes
ringred anew (the C core reads its settings when a communicator is created), runs
``checks[check]()`` (with ``RINGRED_TEST_HOSTS`` in the environment, each rank's
``RINGRED_HOST`` comes from it: see set_test_host) and prints ``CASE <name> RANK <r> OK``,
or ``CASE <name> RANK <r> FAIL
"<exception, JSON-quoted>"`` and the traceback.  Then every rank meets the others in a
barrier on COMM_WORLD: when all arrive (the case failed at the same point everywhere, or on
some ranks after their last collective), the next case runs.  A rank that failed waits
``RINGRED_TEST_CASE_GRACE`` seconds (30) at most: if its peers do not come (they are stuck
in a collective it left), it aborts the job, and the cases after it are reported as not run.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from collections.abc import Callable

import ringred

ENV = "RINGRED_TEST_CASES"


def _meet(failed: bool) -> bool:
    """Barrier on COMM_WORLD; a failed rank gives up after the grace period (False)."""
    from mpi4py import MPI

    req = MPI.COMM_WORLD.Ibarrier()
    deadline = time.monotonic() + float(os.environ.get("RINGRED_TEST_CASE_GRACE", "30"))
    while not req.Test():
        if failed and time.monotonic() > deadline:
            return False
        time.sleep(0.002)
    return True


def set_test_host() -> None:
    """``RINGRED_TEST_HOSTS`` (one label per rank of COMM_WORLD, comma-separated): set this
    rank's ``RINGRED_HOST`` from it, so that one machine poses as several hosts."""
    hosts = os.environ.get("RINGRED_TEST_HOSTS")
    if hosts:
        from mpi4py import MPI

        os.environ["RINGRED_HOST"] = hosts.split(",")[MPI.COMM_WORLD.Get_rank()]


def run_cases(checks: dict[str, Callable[[], None]]) -> None:
    """Run the cases named in ``$RINGRED_TEST_CASES`` with ``checks``; report each."""
    spec = json.loads(os.environ[ENV])
    base = dict(os.environ)
    r = -1
    failures = 0
    for case in spec:
        os.environ.clear()
        os.environ.update(base)
        os.environ.update(case.get("env", {}))
        set_test_host()
        ringred.init()
        r = ringred.rank()
        failed = False
        try:
            checks[case["check"]]()
        except BaseException as exc:
            failed = True
            failures += 1
            msg = json.dumps(f"{type(exc).__name__}: {exc}")
            print(f"CASE {case['name']} RANK {r} FAIL {msg}", flush=True)
            traceback.print_exc()
            sys.stderr.flush()
        else:
            print(f"CASE {case['name']} RANK {r} OK", flush=True)
        try:
            ringred.shutdown()
        except Exception:  # a failed case may leave the communicator unusable
            failed = True
        if not _meet(failed):
            from mpi4py import MPI

            print(f"RANK {r} ABORT: peers did not finish case {case['name']}", flush=True)
            MPI.COMM_WORLD.Abort(1)
            os._exit(1)  # should Abort return before the launcher kills us
    if failures:
        sys.exit(1)
    print(f"RANK {r} OK", flush=True)
