"""RINGRED_SHM_TIMEOUT_SECONDS=0 means "never give up on a live peer" (docs/settings.md),
not "give up at once"."""

from __future__ import annotations

import subprocess
import sys

from .mpi import ROOT, mpiexec, worker_env

SCRIPT = """
import time, numpy as np, ringred
ringred.init()
if ringred.rank() == 1:
    time.sleep(1.5)  # rank 0 waits for it inside the allreduce
got = ringred.allreduce(np.ones(4), op=ringred.Sum)
assert (got == 2).all(), got
print("RANK", ringred.rank(), "OK", flush=True)
"""


def test_zero_timeout_waits_for_a_slow_peer():
    res = subprocess.run([mpiexec(), "-n", "2", sys.executable, "-c", SCRIPT], cwd=ROOT,
                         env=worker_env(RINGRED_TRANSPORT="shm", RINGRED_SHM_TIMEOUT_SECONDS="0"),
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "RANK 0 OK" in res.stdout and "RANK 1 OK" in res.stdout, res.stdout
