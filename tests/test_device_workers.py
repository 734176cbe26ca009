"""The GPU workers of tests/test_gpu.py on the fake device backend (no GPU): the same code
paths with torch CPU tensors / FakeDeviceArray sent through ringred's device path, the IPC
transport imitated by the fake backend and its kernels run as host C.

- the correctness matrix (tests/workers/gpu_matrix.py): IPC bit-compared with staged and
  the host path, every dtype x op, 4 KiB IPC chunks so that small inputs span several;
- DistributedOptimizer (Adam; SGD with momentum) on shards == full-batch training;
- the Horovod-style script (broadcasts, fp16 compression, ops, join)."""

import pytest

from .mpi import run_mpi

TRANSPORTS = {
    "ipc": {"RINGRED_DEVICE_TRANSPORT": "ipc", "RINGRED_IPC_MIN_BYTES": "0",
            "RINGRED_IPC_CHUNK_BYTES": "4096"},
    "staged": {"RINGRED_DEVICE_TRANSPORT": "staged"},
}


@pytest.mark.parametrize("n", [2, 3])
def test_ipc_matches_staged_and_host_fake(n):
    run_mpi(n, "gpu_matrix", "fake", timeout=180,
            env={"RINGRED_IPC_MIN_BYTES": "0", "RINGRED_IPC_CHUNK_BYTES": "4096"})


@pytest.mark.parametrize("transport", list(TRANSPORTS))
def test_distributed_optimizer_matches_full_batch_fake(transport):
    pytest.importorskip("torch")
    run_mpi(2, "gpu_train", "fake", env=TRANSPORTS[transport], timeout=180)


def test_horovod_style_script_fake():
    pytest.importorskip("torch")
    run_mpi(2, "gpu_horovod", "fake", env=TRANSPORTS["ipc"], timeout=180)
