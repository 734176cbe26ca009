"""Horovod semantics learnt from Horovod's own test suite (tests/workers/horovod_compat.py)."""

import pytest

from .mpi import run_mpi

pytest.importorskip("torch")


@pytest.mark.parametrize("n", [1, 2, 3])
def test_horovod_compat(n):
    run_mpi(n, "horovod_compat", timeout=240)
