"""The "ringred" torch.distributed backend: collectives, DDP, FSDP, checkpoints, errors.

Each rank count is one mpiexec launch (importing torch dominates the time)."""

import pytest

from .mpi import run_mpi

pytest.importorskip("torch")


@pytest.mark.parametrize("n,parts", [(1, ["collectives"]),
                                     (2, ["collectives", "ddp", "fsdp"]),
                                     (3, ["collectives", "ddp"])])
def test_torch_distributed(n, parts):
    run_mpi(n, "torch_dist", *parts, timeout=300)


def test_ddp_shape_mismatch_fails_everywhere():
    """Shapes differ on one rank: that rank raises DDP's error and exits; the other's
    collective fails with ringred's shutdown error.  Nobody hangs."""
    res = run_mpi(2, "torch_ddp", timeout=120, expect_ok=False)
    assert res.returncode != 0
    assert "rank 1 DDP-ERROR" in res.stdout and "appears not to match" in res.stdout, res.stdout
    assert "rank 0 DDP-ERROR" in res.stdout and "shut down by rank 1" in res.stdout, res.stdout
