"""Hierarchical collectives on simulated hosts: RINGRED_HOST labels pose this machine as hosts
of 2+2, 3+1 and 2+1+1 ranks (interleaved too), the two-level plan must be in force and give
the collectives' reference results on every rank, the engine's random-order test passes on
it, a disagreement fails on every rank, and a rank killed on one host ends the job."""

from __future__ import annotations

import functools
import os
import re
import subprocess
import sys
import time

import pytest

from .mpi import ROOT, CaseResults, mpiexec, run_mpi_cases, worker_env
from .test_shm import _ours

LAYOUTS = {"2+2": "a,a,b,b", "3+1": "a,a,a,b", "2+1+1": "a,b,a,c", "2+2-interleaved": "a,b,a,b"}
# every allreduce above 0 bytes through the plan (not the flat small-message path)
ALL = {"RINGRED_SMALL_BYTES": "0"}
# the same in 4 KiB pieces at both levels: the shm chunks inside a host, the ring's segments
# across hosts
PIECES = {**ALL, "RINGRED_SEGMENT_BYTES": "4096", "RINGRED_SHM_SMALL_BYTES": "0",
          "RINGRED_SHM_SLOT_BYTES": "4096"}

# (name, check of tests/workers/hier.py, layout, env)
CASES = [
    *[(f"{lay}/layout", "layout", lay, {}) for lay in LAYOUTS],
    *[(f"{lay}/allreduce", "collectives-allreduce", lay, ALL) for lay in LAYOUTS],
    ("2+2/allreduce-pieces", "collectives-allreduce", "2+2", PIECES),
    ("3+1/allreduce-pieces", "collectives-allreduce", "3+1", PIECES),
    ("2+2/allreduce-default-sizes", "collectives-allreduce", "2+2", {}),
    ("2+2/scales", "collectives-scales", "2+2", ALL),
    ("2+1+1/scales", "collectives-scales", "2+1+1", ALL),
    *[(f"{lay}/broadcast", "collectives-broadcast", lay, ALL)
      for lay in ("2+2", "3+1", "2+1+1")],
    # allgather, reducescatter: the flat MPI algorithms on a hierarchical comm
    *[(f"2+2/{k}", f"collectives-{k}", "2+2", ALL) for k in ("allgather", "reducescatter")],
    ("2+2/engine-random-order", "engine-main", "2+2", {**ALL, "ITERS": "200", "SEED": "5"}),
    ("2+1+1/mismatch", "mismatch", "2+1+1", {}),
    ("2+2/setting-errors", "setting-errors", "2+2", {}),
    ("2+2/process-sets", "process-sets", "2+2", {}),
    ("3+1/process-sets", "process-sets", "3+1", {}),
    ("2+2/off", "flat", "2+2", {**ALL, "RINGRED_HIERARCHICAL": "0", "HIER_EXPECT": "0"}),
    ("one-rank-per-host", "flat", "a,b,c,d", {**ALL, "HIER_EXPECT": "0"}),
    ("one-rank-per-host/forced", "collectives-allreduce", "a,b,c,d",
     {**ALL, "RINGRED_HIERARCHICAL": "1"}),
]


@functools.cache
def _job() -> CaseResults:
    cases = [{"name": name, "check": check,
              "env": {"RINGRED_TEST_HOSTS": LAYOUTS.get(lay, lay), **env}}
             for name, check, lay, env in CASES]
    return run_mpi_cases(4, "hier", cases, timeout=120 + 20 * len(cases))


@pytest.mark.parametrize("case", [c[0] for c in CASES])
def test_hierarchical(case):
    _job().check(case)


@pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="no /dev/shm")
@pytest.mark.parametrize("victim,worker", [(3, "deadpeer"), (0, "deadpeer"), (3, "hier"),
                                           (1, "hier")])
def test_rank_killed_on_one_host(victim, worker):
    """2+2 simulated hosts, a rank SIGKILLs itself in a loop of hierarchical allreduces
    (deadpeer: between calls; hier midcall: from a timer, mostly inside a step, while the
    others wait in a child communicator): every survivor raises PeerError naming the dead rank
    and its pid within 30 s, the job ends, nothing of ours stays in /dev/shm."""
    env = worker_env(RINGRED_TEST_HOSTS="a,a,b,b", **ALL)
    args = [str(victim), "sync", "kill"] if worker == "deadpeer" else ["midcall", str(victim)]
    cmd = [mpiexec(), "-disable-auto-cleanup", "-n", "4", sys.executable, "-m",
           "tests.workers.linger", "2", worker, *args]
    t0 = time.monotonic()
    try:
        res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                             timeout=60)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"job still running after 60 s:\n{exc.stdout}\n{exc.stderr}"
                             ) from None
    out = res.stdout + res.stderr
    pids = {int(r): int(p) for r, p in re.findall(r"PID (\d+) (\d+)", res.stdout)}
    killed = re.search(r"KILLED ([\d.]+)", res.stdout)
    found = re.findall(r"RANK (\d+) (\w+) ([\d.]+) ((?:(?!RANK \d).)*)", res.stdout)
    reports = {int(r): (k, float(t), m) for r, k, t, m in found}
    assert killed is not None and set(pids) == set(range(4)), out
    assert set(reports) == set(range(4)) - {victim}, out
    for kind, t, msg in reports.values():
        assert kind == "PeerError", out
        assert t - float(killed.group(1)) < 30, out
        # named by its global rank, also by survivors that were waiting for someone else
        assert f"rank {victim} (pid {pids[victim]}) died" in msg, out
    assert time.monotonic() - t0 < 60
    assert not _ours(pids.values()), _ours(pids.values())


def test_bench_hosts_and_model():
    """--hosts 2 times the plan, the flat MPI transport and MPI_Allreduce in one run; --model
    prints predictions without MPI."""
    cmd = [mpiexec(), "-n", "4", sys.executable, "-m", "ringred.bench", "--hosts", "2",
           "--max-bytes", "16384", "--rounds", "1"]
    res = subprocess.run(cmd, cwd=ROOT, env=worker_env(), capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    lines = res.stdout.splitlines()
    assert "4 ranks posed as 2 hosts" in lines[0], lines[0]
    assert "flat/hier" in lines[1] and "MPI_Allreduce us" in lines[1], lines[1]
    assert [ln.split("|")[0].strip() for ln in lines[3:5]] == ["4 KiB", "16 KiB"], lines
    res = subprocess.run([sys.executable, "-m", "ringred.bench", "--model", "8,4",
                          "--fabric-gbps", "100"], cwd=ROOT, env=worker_env(),
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert "4 hosts x 8 ranks = 32 ranks" in res.stdout and "64 MiB" in res.stdout, res.stdout
