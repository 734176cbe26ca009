"""The device correctness matrix on the fake backend: the IPC transport (fake CUDA IPC, the
host build of the device kernel) bit-compared with the staged transport and the host path,
every dtype x op, 4 KiB IPC chunks so that small inputs span several (tests/workers/
gpu_matrix.py; tests/test_gpu.py runs the same worker on a GPU)."""

import pytest

from .mpi import run_mpi


@pytest.mark.parametrize("n", [2, 3])
def test_ipc_matches_staged_and_host_fake(n):
    run_mpi(n, "gpu_matrix", "fake", timeout=180,
            env={"RINGRED_IPC_MIN_BYTES": "0", "RINGRED_IPC_CHUNK_BYTES": "4096"})
