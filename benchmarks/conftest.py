"""Benchmarks run on every rank: ``mpiexec -n 2 python -m pytest benchmarks --benchmark-only``.

Every rank must call the collectives the same number of times, so the benchmarks use
pytest-benchmark's pedantic mode with fixed rounds and iterations (no calibration).
"""

import pytest

import ringred


@pytest.fixture(scope="session", autouse=True)
def ringred_session():
    ringred.init()
    yield
    ringred.shutdown()
