"""Device (GPU) arrays through the fake device backend: no GPU needed.

The fake backend (csrc/device/device_fake.c) runs the real staging pipeline with worker threads
as streams, random delays and poisoned staging slots (see tests/workers/device.py)."""

import subprocess
import sys

import pytest

from .mpi import ROOT, run_mpi, worker_env

CONFIGS = {
    "default": {},
    # many segments through a ring of 3 slots: downloads, host collectives and uploads overlap
    "tiny-segments": {"RINGRED_DEVICE_SEGMENT_BYTES": "256", "RINGRED_DEVICE_SLOTS": "3"},
}


@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("n", [2, 3])
def test_device_fake(n, config):
    run_mpi(n, "device", env=CONFIGS[config], timeout=180)


def test_device_fake_one_rank():
    run_mpi(1, "device", env=CONFIGS["tiny-segments"], timeout=120)


def test_device_fake_direct():
    """A (fake) CUDA-aware MPI: allreduce hands device pointers to MPI."""
    run_mpi(2, "device", "direct", env={"RINGRED_FAKE_CUDA_AWARE": "1"}, timeout=120)


def test_import_without_cuda():
    """import ringred loads no GPU library; the CUDA backend reports why it cannot run."""
    code = (
        "import sys, ringred, ringred.device\n"
        "assert 'cupy' not in sys.modules and 'numba' not in sys.modules\n"
        "ok, why = ringred.device.backend_available('cuda')\n"
        "assert ok or why, (ok, why)\n"
        "print('cuda', ok, why)\n"
        "ok, why = ringred.device.backend_available('fake')\n"
        "assert ok and why == '', why\n"
    )
    env = worker_env()
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=60, env=env)
    assert res.returncode == 0, res.stderr
