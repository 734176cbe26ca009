"""Device (GPU) requests through the background engine, on the fake device backend.

The whole chain (submission with ready events, device fusion buffer, staging through the
host transport, unpacking, done events) runs without a GPU: FakeDeviceArray inputs, and torch
CPU tensors sent through the device path (RINGRED_TEST_TORCH_AS_DEVICE=1) by the
DistributedOptimizer and Horovod-API workers."""

import functools

import pytest

from .mpi import CaseResults, run_mpi, run_mpi_cases

CONFIGS = {
    "default": {},
    # tiny staging segments (many per fused buffer) and a small fusion threshold, so that
    # fused units, unfused tensors and joined-rank zeros all take several segments
    "small": {"RINGRED_DEVICE_SEGMENT_BYTES": "4096", "RINGRED_DEVICE_SLOTS": "2",
              "RINGRED_FUSION_THRESHOLD": "65536"},
    # pack and unpack with one device-to-device copy per tensor instead of the copy kernel
    "copies": {"RINGRED_DEVICE_PACK": "copies"},
}


# One mpiexec per rank count runs these cases (tests/workers/cases.py): (name, mode, env,
# seconds that the case may take).
JOBS: dict[int, list[tuple[str, str, dict[str, str], int]]] = {
    n: [(f"main-{c}", "main", env, 240) for c, env in CONFIGS.items()] for n in (1, 2, 3)}
for _n in (2, 3):
    JOBS[_n].append(("join", "join", CONFIGS["small"], 180))
JOBS[2].append(("ordering", "ordering", {}, 120))


@functools.cache
def _job(n: int) -> CaseResults:
    cases = [{"name": name, "check": mode, "env": env} for name, mode, env, _ in JOBS[n]]
    return run_mpi_cases(n, "engine_device", cases, timeout=sum(c[3] for c in JOBS[n]))


@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("n", [1, 2, 3])
def test_engine_device(n, config):
    _job(n).check(f"main-{config}")


@pytest.mark.parametrize("n", [2, 3])
def test_engine_device_join(n):
    _job(n).check("join")


def test_engine_device_ordering():
    _job(2).check("ordering")


@pytest.mark.parametrize("plant", ["early_done", "no_ready_wait"])
def test_planted_ordering_bugs_are_caught(plant):
    """Completing requests before their done event fires, or packing inputs without waiting
    for their producer stream, must fail the ordering check."""
    # many rounds: the first wrong result ends the run; a loaded machine (pytest-xdist) can
    # let a few rounds of early_done finish their copies before the results are read
    res = run_mpi(2, "engine_device", "ordering", env={"RINGRED_TEST_PLANT": plant,
                                                      "RINGRED_TEST_ORDERING_ROUNDS": "40"},
                  timeout=120, expect_ok=False)
    assert res.returncode != 0 and "wrong result" in res.stdout + res.stderr, (
        res.stdout[-2000:] + res.stderr[-2000:])


@pytest.mark.parametrize("n", [1, 2, 4])
def test_distributed_optimizer_torch_through_device_path(n):
    run_mpi(n, "dopt_torch", env={"RINGRED_TEST_TORCH_AS_DEVICE": "1"}, timeout=240)


@pytest.mark.parametrize("n", [2, 3])
def test_horovod_api_through_device_path(n):
    run_mpi(n, "torch_api", env={"RINGRED_TEST_TORCH_AS_DEVICE": "1"}, timeout=240)
