"""Soak and fault suite: random collectives of every kind, dtype and odd size, sync and async,
with one-rank bad arguments and short SIGSTOPs of one rank, on both transports at 2 and 3
ranks.  Every result is exact and bit-identical across ranks; every fault ends with the right
error on every rank, and the next call works.  Kills of one rank are covered by
tests/test_shm.py (shm) and the dead-peer tests (MPI).

Each run is a fixed number of steps drawn from its seed (the same plan on every machine, not
a time budget that a loaded machine would spend on fewer steps); the report shows that it
ran them all, with faults, stops and every kind of collective among them."""

import re

import pytest

from .mpi import run_mpi

STEPS = 300
KINDS = {"allreduce", "allreduce_async", "broadcast", "broadcast_async", "allgather",
         "allgather_async", "reducescatter", "grouped"}


@pytest.mark.parametrize("transport", ["shm", "mpi"])
@pytest.mark.parametrize("n", [2, 3])
def test_soak(n, transport):
    seed = {("shm", 2): 11, ("shm", 3): 12, ("mpi", 2): 13, ("mpi", 3): 14}[transport, n]
    res = run_mpi(n, "soak", timeout=150, env={"RINGRED_TRANSPORT": transport,
                                               "RINGRED_SOAK_SEED": str(seed),
                                               "RINGRED_SOAK_STEPS": str(STEPS)})
    report = re.search(r"rank 0: soak seed \d+: (\d+) collectives, (\d+) one-rank faults, "
                       r"(\d+) stops, [\d.]+ s; kinds \[([a-z_,]+)\]", res.stdout)
    assert report, res.stdout[-3000:]
    done, faults, stops, kinds = report.groups()
    assert int(done) == STEPS and int(faults) > 0 and int(stops) > 0, report.group(0)
    assert set(kinds.split(",")) == KINDS, report.group(0)
