"""The background engine (ringred.allreduce_async & co.) on 1-4 ranks, across settings."""

import functools

import pytest

from .mpi import CaseResults, run_mpi, run_mpi_cases

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


# Cases of one mpiexec per rank count (tests/workers/cases.py): (name, mode, env).  Each case
# initializes ringred anew, so its engine starts with the case's settings.
SETTINGS = [("cache-off", 2), ("fusion-off", 2), ("tiny-fusion", 3), ("tiny-cache", 3),
            ("cold-set", 2), ("cold-set", 3)]
JOBS: dict[int, list[tuple[str, str, dict[str, str]]]] = {n: [] for n in (1, 2, 3, 4)}
for _n in (1, 2, 3, 4):
    JOBS[_n].append(("main", "main", {"ITERS": {1: "500", 2: "3000"}.get(_n, "400"),
                                      "SEED": str(10 + _n)}))
for _config, _n in SETTINGS:
    JOBS[_n].append((f"settings-{_config}", "main", {**CONFIGS[_config], "ITERS": "300"}))
for _n in (2, 3, 4):
    JOBS[_n].append(("join", "join", {}))
JOBS[2].append(("stall-warning", "stall-warn", {"RINGRED_STALL_CHECK_SECONDS": "1"}))
JOBS[3].append(("stall-shutdown", "stall-shutdown", {"RINGRED_STALL_SHUTDOWN_SECONDS": "2"}))
JOBS[3].append(("first-error-reported-everywhere", "fault", {"RINGRED_TEST_FAULT": "boom:1"}))
for _n in (1, 3):
    JOBS[_n].append(("pending-handles-fail-at-shutdown", "shutdown", {}))


@functools.cache
def _engine_job(n: int) -> CaseResults:
    cases = [{"name": name, "check": mode, "env": env} for name, mode, env in JOBS[n]]
    return run_mpi_cases(n, "engine", cases, timeout=120 + 60 * len(cases))


@pytest.mark.parametrize("n,case", [(n, c[0]) for n in JOBS for c in JOBS[n]])
def test_engine(n, case):
    _engine_job(n).check(case)


@pytest.mark.parametrize("transport", ["shm", "mpi"])
def test_timeline(tmp_path, transport):
    run_mpi(2, "engine", "timeline", str(tmp_path / "timeline.json"),
            env={"RINGRED_TRANSPORT": transport}, timeout=120)


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
