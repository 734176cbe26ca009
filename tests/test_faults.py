"""Faults below the collectives: a full /dev/shm (fall back to MPI, never SIGBUS), a peer that
dies or hangs on the MPI transport, engine creation that fails on one rank, and a peer that
exits with an uncaught exception while the others wait on it."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time

import pytest

from .mpi import ROOT, mpiexec, run_mpi, worker_env

# MPICH puts about n MiB of its own into /dev/shm; ringred's segment needs 1.6 MiB at two
# ranks, 2.2 at three: an (n + 1) MiB tmpfs leaves about 1 MiB, too little for it
TINY_SHM = "mount -t tmpfs -o size={mib}m tmpfs /dev/shm"


def _unshare() -> list[str] | None:
    """A command prefix that gives a private mount namespace in which we may mount, or None."""
    if shutil.which("unshare") is None:
        return None
    for prefix in (["unshare", "-m"], ["unshare", "-rm"]):
        try:
            res = subprocess.run([*prefix, "sh", "-c", TINY_SHM.format(mib=3)], capture_output=True,
                                 timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if res.returncode == 0:
            return prefix
    return None


@pytest.mark.parametrize("n", [2, 3])
def test_full_dev_shm_falls_back_to_mpi(n):
    """/dev/shm is an (n + 1) MiB tmpfs (MPICH takes n of them): the segment's pages cannot be
    reserved, so every rank reports transport "mpi" with one warning naming the size needed,
    the free space and RINGRED_TRANSPORT, and a 12 MiB allreduce is right (it used to die of
    SIGBUS)."""
    prefix = _unshare()
    if prefix is None:
        pytest.skip("no private mount namespace here (unshare -m / -rm not allowed)")
    inner = (f"{TINY_SHM.format(mib=n + 1)} && exec {mpiexec()} -n {n} {sys.executable} -m "
             "tests.workers.shm_full")
    res = subprocess.run([*prefix, "sh", "-c", inner], cwd=ROOT, env=worker_env(),
                         capture_output=True, text=True, timeout=120)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    for r in range(n):
        assert f"RANK {r} OK" in res.stdout, out
    assert "could not create and reserve" in res.stdout, out


# ---------------------------------------------------------------- dead peers on MPI

def _run_deadpeer(n: int, victim: int, mode: str, how: str = "kill", **env: str):
    """tests.workers.deadpeer under the linger wrapper (hydra would otherwise take the job
    down before the survivors report); returns (output, {rank: pid}, kill time, reports)."""
    full = worker_env(**{"RINGRED_TRANSPORT": "mpi", **env})
    # a raising rank does not die of a signal: no wrapper, and hydra's cleanup ends the job
    # once a survivor exits (the raising rank would wait for the others in MPI_Finalize)
    if how == "raise":
        launch = ["-n", str(n), sys.executable, "-m", "tests.workers.deadpeer"]
    else:
        launch = ["-disable-auto-cleanup", "-n", str(n), sys.executable, "-m",
                  "tests.workers.linger", "2", "deadpeer"]
    cmd = [mpiexec(), *launch, str(victim), mode, how]
    t0 = time.monotonic()
    try:
        res = subprocess.run(cmd, cwd=ROOT, env=full, capture_output=True, text=True,
                             timeout=90)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"job still running after 90 s:\n{exc.stdout}\n{exc.stderr}"
                             ) from None
    assert time.monotonic() - t0 < 90
    out = res.stdout + res.stderr
    pids = {int(r): int(p) for r, p in re.findall(r"PID (\d+) (\d+)", res.stdout)}
    killed = re.search(r"KILLED ([\d.]+)", res.stdout)
    found = re.findall(r"RANK (\d+) (\w+) ([\d.]+) ((?:(?!RANK \d).)*)", res.stdout)
    reports = {int(r): (k, float(t), m) for r, k, t, m in found}
    return out, pids, float(killed.group(1)) if killed else None, reports


@pytest.mark.parametrize("n,victim,mode", [(2, 1, "sync"), (3, 0, "sync"), (2, 0, "async"),
                                           (3, 2, "async")])
def test_peer_killed_on_mpi_transport(n, victim, mode):
    """A rank SIGKILLs itself mid-loop on the MPI transport: every survivor raises PeerError
    naming the dead rank and its pid, within 30 s of the kill (in practice ~0.05 s)."""
    out, pids, killed, reports = _run_deadpeer(n, victim, mode)
    assert killed is not None, out
    assert set(reports) == set(range(n)) - {victim}, out
    for _rank, (kind, t, msg) in reports.items():
        assert kind == "PeerError", out
        assert f"rank {victim} (pid {pids[victim]}) died" in msg, out
        assert "MPI transport" in msg and "MPI_ERROR" not in msg, out
        assert t - killed < 30, out


def test_peer_hangs_on_mpi_transport():
    """A rank stops calling (alive): the others give up after RINGRED_TIMEOUT_SECONDS."""
    out, pids, _, reports = _run_deadpeer(3, 1, "sync", "hang", RINGRED_TIMEOUT_SECONDS="1")
    assert set(reports) == {0, 2}, out
    for kind, _t, msg in reports.values():
        assert kind == "RingredTimeoutError", out
        assert "within 1 s (RINGRED_TIMEOUT_SECONDS)" in msg, out


@pytest.mark.parametrize("n,transport,mode", [(2, "shm", "async"), (3, "mpi", "sync"),
                                              (2, "shm", "sync")])
def test_peer_exits_with_uncaught_exception(n, transport, mode):
    """A rank raises out of its script while the others wait on it (a synchronous collective:
    its exit notice; an asynchronous request: its engine's exit reason): they get PeerError
    naming that rank, its pid and the exception, not "shut down" and not a hang."""
    out, pids, _, reports = _run_deadpeer(n, 1, mode, "raise", RINGRED_TRANSPORT=transport)
    assert set(reports) == set(range(n)) - {1}, out
    for kind, _t, msg in reports.values():
        assert kind == "PeerError", out
        assert (f"rank 1: its process (pid {pids[1]}) exited after an uncaught RuntimeError: "
                "planted crash" in msg), out


# ---------------------------------------------------------------- engine creation

@pytest.mark.parametrize("n", [2, 3])
def test_engine_creation_fails_on_every_rank(n):
    """A bad RINGRED_TIMELINE path on rank 0, then an allocation failure on the last rank,
    each with the engine on shm and on MPI: every rank raises naming the failing rank and its
    reason; a synchronous collective still works, and so does the engine once the fault is
    gone."""
    res = run_mpi(n, "engine_create", timeout=120)
    assert res.stdout.count("CREATION-FAILED") == 4 * n, res.stdout
