"""ringred.torch (Horovod's API) at N = 1, 2, 3."""

import pytest

from .mpi import run_mpi

pytest.importorskip("torch")


@pytest.mark.parametrize("n", [1, 2, 3])
def test_torch_api(n):
    run_mpi(n, "torch_api", timeout=240)
