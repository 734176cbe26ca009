"""Many cases in one ``mpiexec`` run, each reported on its own line (tests/mpi.py
``run_mpi_cases`` turns the lines into one pytest result per case).

The case list comes from ``RINGRED_TEST_CASES``: a JSON list of ``{"name", "check", "env"}``.
For each case every rank sets the case's environment (on top of the job's), initializes
ringred anew (the C core reads its settings when a communicator is created), runs
``checks[check]()`` and prints ``CASE <name> RANK <r> OK``.  A failing case prints
``CASE <name> RANK <r> FAIL "<exception, JSON-quoted>"`` and its traceback, then aborts the
job (the other ranks may be inside a collective of that case: stopping is the only way not
to hang); the cases after it are reported as not run.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Callable

import ringred

ENV = "RINGRED_TEST_CASES"


def run_cases(checks: dict[str, Callable[[], None]]) -> None:
    """Run the cases named in ``$RINGRED_TEST_CASES`` with ``checks``; report each."""
    spec = json.loads(os.environ[ENV])
    base = dict(os.environ)
    r = -1
    for case in spec:
        os.environ.clear()
        os.environ.update(base)
        os.environ.update(case.get("env", {}))
        ringred.init()
        r = ringred.rank()
        try:
            checks[case["check"]]()
        except BaseException as exc:
            msg = json.dumps(f"{type(exc).__name__}: {exc}")
            print(f"CASE {case['name']} RANK {r} FAIL {msg}", flush=True)
            traceback.print_exc()
            sys.stdout.flush()
            sys.stderr.flush()
            from mpi4py import MPI

            MPI.COMM_WORLD.Abort(1)
            os._exit(1)  # should Abort return before the launcher kills us
        print(f"CASE {case['name']} RANK {r} OK", flush=True)
        ringred.shutdown()
    print(f"RANK {r} OK", flush=True)
