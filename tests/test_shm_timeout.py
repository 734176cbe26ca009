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
print(f"RANK {ringred.rank()} OK", flush=True)  # one write: ranks share the pipe
ringred.shutdown()  # not an exit while rank 0 may still be in the allreduce (see below)
"""


# The shutdown keeps rank 1 from exiting while rank 0 may still be in the allreduce.  Without
# it, rank 1's exit notice could reach rank 0 (descheduled on a loaded machine) before rank 0
# read the counter rank 1 had set; csrc/shm/shm.c wait_slow now reads the counter again when a
# liveness check fails, so that case completes too, but this test is about the timeout.


def test_zero_timeout_waits_for_a_slow_peer():
    res = subprocess.run([mpiexec(), "-n", "2", sys.executable, "-c", SCRIPT], cwd=ROOT,
                         env=worker_env(RINGRED_TRANSPORT="shm", RINGRED_SHM_TIMEOUT_SECONDS="0"),
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "RANK 0 OK" in res.stdout and "RANK 1 OK" in res.stdout, res.stdout
