"""Checks for the case runner itself (tests/test_case_reporting.py): one case passes, one
fails on the last rank with its values, one would come after the failure."""

from __future__ import annotations

import numpy as np

import ringred

from .cases import run_cases


def passes() -> None:
    got = ringred.allreduce(np.ones(4), op=ringred.Sum)
    assert (got == ringred.size()).all(), got


def wrong_on_last_rank() -> None:
    got = ringred.allreduce(np.arange(3.0), op=ringred.Sum)
    if ringred.rank() == ringred.size() - 1:
        got = got + 1  # stands for a broken kernel on one rank
    want = np.arange(3.0) * ringred.size()
    assert np.array_equal(got, want), f"got {got.tolist()} want {want.tolist()}"


def last_rank_leaves() -> None:
    """The last rank fails before a collective the others enter: they are stuck in it."""
    if ringred.rank() == ringred.size() - 1:
        raise AssertionError("leaving")
    ringred.allreduce(np.ones(4))


if __name__ == "__main__":
    run_cases({"passes": passes, "wrong": wrong_on_last_rank, "leaves": last_rank_leaves})
