"""tests/mpi.py run_mpi_cases: one pytest outcome per case of one mpiexec job, and a failure
names the case, the rank and the values (the other checks depend on this)."""

from __future__ import annotations

import pytest

from .mpi import run_mpi_cases


def test_a_failing_case_names_case_rank_and_values():
    cases = [{"name": "first/passes", "check": "passes", "env": {}},
             {"name": "env/passes", "check": "passes", "env": {"RINGRED_TRANSPORT": "mpi"}},
             {"name": "broken/wrong", "check": "wrong", "env": {}},
             {"name": "later/passes", "check": "passes", "env": {}}]
    job = run_mpi_cases(2, "cases_selftest", cases, timeout=120)
    job.check("first/passes")
    job.check("env/passes")
    with pytest.raises(AssertionError) as failed:
        job.check("broken/wrong")
    msg = str(failed.value)
    assert "case broken/wrong failed on 2 ranks" in msg, msg
    assert "rank 1: AssertionError: got [1.0, 3.0, 5.0] want [0.0, 2.0, 4.0]" in msg, msg
    assert "rank 0:" not in msg.split("rc=")[0], msg  # rank 0 was right
    # rank 1 failed after the case's last collective: the next case still runs
    job.check("later/passes")


def test_a_rank_stuck_in_a_collective_stops_the_job_and_later_cases_say_so():
    cases = [{"name": "stuck/one-rank-leaves", "check": "leaves", "env": {}},
             {"name": "later/passes", "check": "passes", "env": {}}]
    job = run_mpi_cases(2, "cases_selftest", cases, timeout=120,
                        env={"RINGRED_TEST_CASE_GRACE": "3", "RINGRED_TRANSPORT": "mpi"})
    with pytest.raises(AssertionError, match="rank 1: AssertionError: leaving"):
        job.check("stuck/one-rank-leaves")
    with pytest.raises(AssertionError,
                       match="did not finish .* after case stuck/one-rank-leaves failed"):
        job.check("later/passes")
