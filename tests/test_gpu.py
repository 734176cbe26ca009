"""Device collectives on a real GPU (CuPy; torch.cuda where torch has CUDA).

Skipped unless CuPy is installed and a CUDA device is visible; the torch tests also need
torch with CUDA.  Two ranks share GPU ``local_rank % device_count`` (one GPU is enough).
benchmarks/gpu_check.sh runs this on a GPU machine.

The device transport is chosen per communicator by ``RINGRED_DEVICE_TRANSPORT`` (read when
the communicator is created); ``RINGRED_IPC_MIN_BYTES=0`` makes every size take IPC where
the IPC transport is asked for.  The matrix test runs both transports in one process (two
ringred contexts) and compares them bit for bit with the host path.
"""

import pytest

from .mpi import run_mpi

cupy = pytest.importorskip("cupy")


def _gpus() -> int:
    try:
        return int(cupy.cuda.runtime.getDeviceCount())
    except Exception:  # no driver, no device
        return 0


pytestmark = pytest.mark.skipif(_gpus() == 0, reason="no CUDA device")

TRANSPORTS = {
    "ipc": {"RINGRED_DEVICE_TRANSPORT": "ipc", "RINGRED_IPC_MIN_BYTES": "0"},
    "staged": {"RINGRED_DEVICE_TRANSPORT": "staged"},
}


def _torch_cuda() -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch without CUDA")


@pytest.mark.parametrize("config", ["default", "staged-small-segments"])
def test_gpu_collectives(config):
    """Synchronous collectives on CuPy / torch.cuda (tests/workers/gpu.py)."""
    env = {"RINGRED_CUDA_AWARE": "0"}
    if config == "staged-small-segments":
        env.update({"RINGRED_DEVICE_TRANSPORT": "staged",
                    "RINGRED_DEVICE_SEGMENT_BYTES": "65536", "RINGRED_DEVICE_SLOTS": "3"})
    run_mpi(2, "gpu", env=env, timeout=80)


@pytest.mark.parametrize("chunks", ["default-chunk", "64KiB-chunks"])
def test_gpu_matrix_ipc_vs_staged_vs_host(chunks):
    """dtype x op x size: IPC == staged == host path, bit for bit (tests/workers/gpu_matrix)."""
    env = {"RINGRED_CUDA_AWARE": "0", "RINGRED_IPC_MIN_BYTES": "0"}
    if chunks == "64KiB-chunks":
        env["RINGRED_IPC_CHUNK_BYTES"] = "65536"
    run_mpi(2, "gpu_matrix", "cuda", env=env, timeout=100)


@pytest.mark.parametrize("transport", list(TRANSPORTS))
def test_gpu_distributed_optimizer_matches_full_batch(transport):
    """torch.cuda model, DistributedOptimizer (Adam; SGD momentum 0.9), 2 shards == 1 batch."""
    _torch_cuda()
    run_mpi(2, "gpu_train", "cuda", env=TRANSPORTS[transport], timeout=60)


@pytest.mark.parametrize("transport", list(TRANSPORTS))
def test_gpu_async_fused_behind_busy_stream(transport):
    """Engine allreduces (named, grouped, in place) of tensors still being produced."""
    run_mpi(2, "gpu_async", env=TRANSPORTS[transport], timeout=60)


def test_gpu_horovod_style_script():
    """``import ringred.torch as hvd`` on CUDA: broadcasts, fp16 DistributedOptimizer, ops,
    join (default transport selection)."""
    _torch_cuda()
    run_mpi(2, "gpu_horovod", timeout=60)
