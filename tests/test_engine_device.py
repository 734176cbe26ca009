"""Device (GPU) requests through the background engine, on the fake device backend.

The whole chain (submission with ready events, device fusion buffer, staging through the
host transport, unpacking, done events) runs without a GPU: FakeDeviceArray inputs, and torch
CPU tensors sent through the device path (RINGRED_TEST_TORCH_AS_DEVICE=1) by the
DistributedOptimizer and Horovod-API workers."""

import pytest

from .mpi import run_mpi

CONFIGS = {
    "default": {},
    # tiny staging segments (many per fused buffer) and a small fusion threshold, so that
    # fused units, unfused tensors and joined-rank zeros all take several segments
    "small": {"RINGRED_DEVICE_SEGMENT_BYTES": "4096", "RINGRED_DEVICE_SLOTS": "2",
              "RINGRED_FUSION_THRESHOLD": "65536"},
    # pack and unpack with one device-to-device copy per tensor instead of the copy kernel
    "copies": {"RINGRED_DEVICE_PACK": "copies"},
}


@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("n", [1, 2, 3])
def test_engine_device(n, config):
    run_mpi(n, "engine_device", "main", env=CONFIGS[config], timeout=240)


@pytest.mark.parametrize("n", [2, 3])
def test_engine_device_join(n):
    run_mpi(n, "engine_device", "join", env=CONFIGS["small"], timeout=180)


def test_engine_device_ordering():
    run_mpi(2, "engine_device", "ordering", timeout=120)


@pytest.mark.parametrize("plant", ["early_done", "no_ready_wait"])
def test_planted_ordering_bugs_are_caught(plant):
    """Completing requests before their done event fires, or packing inputs without waiting
    for their producer stream, must fail the ordering check."""
    res = run_mpi(2, "engine_device", "ordering", env={"RINGRED_TEST_PLANT": plant},
                  timeout=120, expect_ok=False)
    assert res.returncode != 0 and "wrong result" in res.stdout + res.stderr, (
        res.stdout[-2000:] + res.stderr[-2000:])


@pytest.mark.parametrize("n", [1, 2, 4])
def test_distributed_optimizer_torch_through_device_path(n):
    run_mpi(n, "dopt_torch", env={"RINGRED_TEST_TORCH_AS_DEVICE": "1"}, timeout=240)


@pytest.mark.parametrize("n", [2, 3])
def test_horovod_api_through_device_path(n):
    run_mpi(n, "torch_api", env={"RINGRED_TEST_TORCH_AS_DEVICE": "1"}, timeout=240)
