"""Device collectives on a real GPU (CuPy; torch.cuda too when present).

Skipped unless CuPy is installed and a CUDA device is visible.  benchmarks/gpu_check.sh
runs this on a GPU machine."""

import pytest

from .mpi import run_mpi

cupy = pytest.importorskip("cupy")


def _gpus() -> int:
    try:
        return int(cupy.cuda.runtime.getDeviceCount())
    except Exception:  # no driver, no device
        return 0


pytestmark = pytest.mark.skipif(_gpus() == 0, reason="no CUDA device")


@pytest.mark.parametrize("config", ["default", "small-segments"])
def test_gpu_collectives(config):
    env = {"RINGRED_CUDA_AWARE": "0"}
    if config == "small-segments":
        env.update({"RINGRED_DEVICE_SEGMENT_BYTES": "65536", "RINGRED_DEVICE_SLOTS": "3"})
    run_mpi(2, "gpu", env=env, timeout=400)
