"""Errors that start on one rank end on every rank, within seconds, and the next call works:
one-rank bad arguments (sync and async), barrier against allreduce, synchronous calls from
two threads at once (never a wrong result), and stall warnings on every waiting rank."""

import pytest

from .mpi import run_mpi


@pytest.mark.parametrize("transport", ["shm", "mpi"])
@pytest.mark.parametrize("n", [2, 3])
def test_one_rank_errors(n, transport):
    run_mpi(n, "one_rank", timeout=180,
            env={"RINGRED_TRANSPORT": transport, "RINGRED_STALL_CHECK_SECONDS": "1"})
