"""Collectives against NumPy references on 1-4 ranks, for both transports and across
algorithm settings."""

import pytest

from .mpi import CaseResults, run_mpi, run_mpi_cases

MPI = {"RINGRED_TRANSPORT": "mpi"}
SHM = {"RINGRED_TRANSPORT": "shm"}
CONFIGS = {
    "mpi": MPI,
    # every message through the ring, many tiny segments: exercises the pipeline
    "mpi-ring-4k": {**MPI, "RINGRED_SMALL_BYTES": "0", "RINGRED_SEGMENT_BYTES": "4096"},
    # every message through the latency path
    "mpi-small-only": {**MPI, "RINGRED_SMALL_BYTES": "16777216"},
    "shm": SHM,
    # every message through the chunked path, in many 4 KiB chunks: two ranks reduce every
    # chunk each, more ranks a slice each
    "shm-chunks-4k": {**SHM, "RINGRED_SHM_SMALL_BYTES": "0", "RINGRED_SHM_SLOT_BYTES": "4096"},
    # the same, streaming: slices for every rank count, copied out with non-temporal stores
    "shm-slices-4k": {**SHM, "RINGRED_SHM_SMALL_BYTES": "0", "RINGRED_SHM_SLOT_BYTES": "4096",
                      "RINGRED_SHM_STREAM_BYTES": "1"},
    # slices of 64 KiB chunks, each reduced in several steps (the interleaved plan), streaming
    "shm-slices-64k": {**SHM, "RINGRED_SHM_SMALL_BYTES": "0", "RINGRED_SHM_SLOT_BYTES": "65536",
                       "RINGRED_SHM_STREAM_BYTES": "1"},
    # every message (up to 320 KB here) through the one-sync path
    "shm-small-only": {**SHM, "RINGRED_SHM_SMALL_BYTES": "1M"},
}


# one rank takes no algorithm: the settings variants only matter from two ranks on
CASES = [(n, c) for n in (1, 2, 3, 4) for c in CONFIGS if n > 1 or c in ("mpi", "shm")]
CHECKS = ["allreduce", "scales", "broadcast", "allgather", "reducescatter"]


@pytest.fixture(scope="module")
def collectives_job():
    """One mpiexec per rank count runs every config x check (tests/workers/cases.py)."""
    jobs: dict[int, CaseResults] = {}

    def get(n: int) -> CaseResults:
        if n not in jobs:
            cases = [{"name": f"{c}/{chk}", "check": chk, "env": CONFIGS[c]}
                     for cn, c in CASES if cn == n for chk in CHECKS]
            jobs[n] = run_mpi_cases(n, "collectives", cases, timeout=120 + 15 * len(cases))
        return jobs[n]

    return get


@pytest.mark.parametrize("check", CHECKS)
@pytest.mark.parametrize("n,config", CASES)
def test_collectives(collectives_job, n, config, check):
    collectives_job(n).check(f"{config}/{check}")


@pytest.mark.parametrize("n,transport", [(2, "mpi"), (3, "mpi"), (2, "shm"), (3, "shm")])
def test_collectives_ten_million(n, transport):
    run_mpi(n, "collectives", "full", env={"RINGRED_TRANSPORT": transport}, timeout=400)


def test_more_than_2_31_elements():
    run_mpi(2, "huge", env={"RINGRED_SEGMENT_BYTES": "67108864", "RINGRED_TRANSPORT": "mpi"},
            timeout=400)


@pytest.mark.parametrize("n", [1, 2, 3])
def test_array_types(n):
    run_mpi(n, "array_types", timeout=120)
