"""Error handling: mismatches and bad input fail on every rank, without hangs."""

import functools

import numpy as np
import pytest

import ringred

from .mpi import CaseResults, run_mpi_cases

TRANSPORTS = ["mpi", "shm"]
CHECKS = ["mismatches", "bad-input", "overlapping-out", "no-memory", "alltoall-splits",
          "unpicklable"]


@functools.cache
def _errors_job(n: int) -> CaseResults:
    """One mpiexec per rank count: every transport x check, each its own case."""
    cases = [{"name": f"{t}/{c}", "check": c, "env": {"RINGRED_TRANSPORT": t}}
             for t in TRANSPORTS for c in CHECKS]
    return run_mpi_cases(n, "errors", cases, timeout=240)


@pytest.mark.parametrize("check", CHECKS)
@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_errors(n, transport, check):
    _errors_job(n).check(f"{transport}/{check}")


def test_calls_before_init_raise():
    assert not ringred.is_initialized()
    for call in (
        lambda: ringred.allreduce(np.ones(3)),
        lambda: ringred.broadcast(np.ones(3), 0),
        lambda: ringred.allgather(np.ones(3)),
        lambda: ringred.reducescatter(np.ones(3)),
        lambda: ringred.rank(),
        lambda: ringred.barrier(),
    ):
        with pytest.raises(ringred.NotInitializedError, match="init"):
            call()


def test_exception_hierarchy():
    assert issubclass(ringred.MismatchError, ValueError)
    assert issubclass(ringred.MismatchError, ringred.RingredError)
    assert issubclass(ringred.RingredError, RuntimeError)
