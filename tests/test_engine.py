"""The background engine (ringred.allreduce_async & co.) on 1-4 ranks, across settings."""

import pytest

from .mpi import run_mpi

# Settings that change which code paths run (the worker's checks stay the same).
CONFIGS = {
    "cache-off": {"RINGRED_CACHE_CAPACITY": "0"},
    "fusion-off": {"RINGRED_FUSION_THRESHOLD": "0"},
    "tiny-fusion": {"RINGRED_FUSION_THRESHOLD": "4096"},
    # far fewer slots than live names: constant LRU eviction and requeueing
    "tiny-cache": {"RINGRED_CACHE_CAPACITY": "8"},
    # shared memory: once anything is cached the set counts as cold and tensors from 8 KiB on
    # stream (two ranks: the slice plan), before that the two-rank plan: both alternate
    "cold-set": {"RINGRED_TRANSPORT": "shm", "RINGRED_ENGINE_COLD_SET_BYTES": "1",
                 "RINGRED_SHM_STREAM_BYTES": "65536", "RINGRED_SHM_SMALL_BYTES": "4096",
                 "RINGRED_SHM_SLOT_BYTES": "16384"},
}


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_engine(n):
    iters = {1: "500", 2: "3000"}.get(n, "400")
    run_mpi(n, "engine", env={"ITERS": iters, "SEED": str(10 + n)}, timeout=240)


@pytest.mark.parametrize("config,n", [("cache-off", 2), ("fusion-off", 2), ("tiny-fusion", 3),
                                      ("tiny-cache", 3), ("cold-set", 2), ("cold-set", 3)])
def test_engine_settings(config, n):
    run_mpi(n, "engine", env={**CONFIGS[config], "ITERS": "300"}, timeout=240)


@pytest.mark.parametrize("n", [2, 3, 4])
def test_join(n):
    run_mpi(n, "engine", "join", timeout=120)


def test_stall_warning():
    run_mpi(2, "engine", "stall-warn", env={"RINGRED_STALL_CHECK_SECONDS": "1"}, timeout=120)


def test_stall_shutdown():
    run_mpi(3, "engine", "stall-shutdown", env={"RINGRED_STALL_SHUTDOWN_SECONDS": "2"},
            timeout=120)


@pytest.mark.parametrize("transport", ["shm", "mpi"])
def test_timeline(tmp_path, transport):
    run_mpi(2, "engine", "timeline", str(tmp_path / "timeline.json"),
            env={"RINGRED_TRANSPORT": transport}, timeout=120)


def test_first_error_is_reported_everywhere():
    run_mpi(3, "engine", "fault", env={"RINGRED_TEST_FAULT": "boom:1"}, timeout=120)


@pytest.mark.parametrize("n", [1, 3])
def test_pending_handles_fail_at_shutdown(n):
    run_mpi(n, "engine", "shutdown", timeout=120)


def test_torch_tensors():
    pytest.importorskip("torch")
    run_mpi(2, "engine", "torch", timeout=180)


def test_engine_api_exports():
    import ringred

    for name in ("allreduce_async", "broadcast_async", "allgather_async",
                 "reducescatter_async", "grouped_allreduce", "grouped_allreduce_async",
                 "poll", "synchronize", "join", "start_timeline", "stop_timeline", "Handle"):
        assert hasattr(ringred, name), name
    assert issubclass(ringred.DuplicateNameError, ValueError)
