"""Soak and fault suite (about a minute and a half): random collectives of every kind, dtype
and odd size, sync and async, with one-rank bad arguments and short SIGSTOPs of one rank,
on both transports at 2 and 3 ranks.  Every result is exact and bit-identical across ranks;
every fault ends with the right error on every rank, and the next call works.  Kills of one
rank are covered by tests/test_shm.py (shm) and the dead-peer tests (MPI)."""

import pytest

from .mpi import run_mpi


@pytest.mark.parametrize("transport", ["shm", "mpi"])
@pytest.mark.parametrize("n", [2, 3])
def test_soak(n, transport):
    seed = {("shm", 2): 11, ("shm", 3): 12, ("mpi", 2): 13, ("mpi", 3): 14}[transport, n]
    res = run_mpi(n, "soak", timeout=150, env={"RINGRED_TRANSPORT": transport,
                                               "RINGRED_SOAK_SEED": str(seed),
                                               "RINGRED_SOAK_SECONDS": "15"})
    assert "one-rank faults" in res.stdout
