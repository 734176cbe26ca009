"""Process sets over sub-communicators."""

import pytest

from .mpi import run_mpi


@pytest.mark.parametrize("n", [1, 3, 4])
def test_process_sets(n):
    run_mpi(n, "process_sets", timeout=120)
