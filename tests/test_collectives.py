"""Collectives against NumPy references on 1-4 ranks, across algorithm settings."""

import pytest

from .mpi import run_mpi

CONFIGS = {
    "default": {},
    # every message through the ring, many tiny segments: exercises the pipeline
    "ring-4k": {"RINGRED_SMALL_BYTES": "0", "RINGRED_SEGMENT_BYTES": "4096"},
    # every message through the latency path
    "small-only": {"RINGRED_SMALL_BYTES": "16777216"},
}


@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_collectives(n, config):
    run_mpi(n, "collectives", env=CONFIGS[config], timeout=240)


@pytest.mark.parametrize("n", [2, 3])
def test_collectives_ten_million(n):
    run_mpi(n, "collectives", "full", timeout=400)


def test_more_than_2_31_elements():
    run_mpi(2, "huge", env={"RINGRED_SEGMENT_BYTES": "67108864"}, timeout=400)


@pytest.mark.parametrize("n", [1, 2, 3])
def test_array_types(n):
    run_mpi(n, "array_types", timeout=120)
