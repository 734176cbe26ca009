"""Error handling: mismatches and bad input fail on every rank, without hangs."""

import numpy as np
import pytest

import ringred

from .mpi import run_mpi


@pytest.mark.parametrize("transport", ["mpi", "shm"])
@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_errors(n, transport):
    run_mpi(n, "errors", env={"RINGRED_TRANSPORT": transport}, timeout=180)


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
