"""The shared-memory transport: races under back-to-back collectives, a peer that dies or
hangs, and nothing of ours left in /dev/shm."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest

from .mpi import ROOT, mpiexec, run_mpi, worker_env

# small thresholds so that a few hundred calls cover the one-sync path, single chunks and
# many chunks, and the sizes straddle each boundary; allreduces from 40000 bytes on stream
# (two ranks: the slice plan, below it each rank reduces every chunk), so both plans alternate
STRESS = {"RINGRED_TRANSPORT": "shm", "RINGRED_SHM_SMALL_BYTES": "4096",
          "RINGRED_SHM_SLOT_BYTES": "16384", "RINGRED_SHM_STREAM_BYTES": "40000"}


@pytest.mark.parametrize("n", [2, 3, 4])
def test_back_to_back_collectives(n):
    run_mpi(n, "stress", "300", env=STRESS, timeout=240)


# 32 KiB slots: two and three ranks reduce each chunk's slice in several steps interleaved
# with the copies (the slice plan's steps are 8 KiB), over up to five chunks (slot reuse)
STRESS_STEPS = {**STRESS, "RINGRED_SHM_SLOT_BYTES": "32768"}


@pytest.mark.parametrize("n", [2, 3])
def test_back_to_back_collectives_in_steps(n):
    run_mpi(n, "stress", "300", env=STRESS_STEPS, timeout=240)


def test_back_to_back_collectives_default_settings():
    run_mpi(2, "stress", "150", env={"RINGRED_TRANSPORT": "shm"}, timeout=240)


def _ours(pids) -> set[str]:
    """Our segments in /dev/shm made by one of pids (they are named ringred-<pid>-<random>
    after the rank that made them): other jobs may run alongside (pytest-xdist)."""
    mine = {f"ringred-{p}-" for p in pids}
    return {f for f in os.listdir("/dev/shm") if f[:f.find("-", 8) + 1] in mine}


def _run_victim(n: int, victim: int, mode: str, wrap: bool, extra_env: dict | None = None):
    """Run tests.workers.kill; returns (stdout, {rank: pid}, [(rank, exc name, message)])."""
    env = worker_env(RINGRED_TRANSPORT="shm", PYTHONUNBUFFERED="1", **(extra_env or {}))
    worker = ["tests.workers.linger", "5", "kill"] if wrap else ["tests.workers.kill"]
    cmd = [mpiexec(), "-n", str(n), sys.executable, "-m", *worker, str(victim), mode]
    t0 = time.monotonic()
    try:
        res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"job still running 30 s after rank {victim} failed:\n"
                             f"{exc.stdout}\n{exc.stderr}") from None
    assert time.monotonic() - t0 < 30
    assert res.returncode != 0, res.stdout
    pids = {int(r): int(p) for r, p in re.findall(r"PID (\d+) (\d+)", res.stdout)}
    # the lines of two ranks may arrive glued together: a report ends where the next begins
    found = re.findall(r"RANK (\d+) (\w+) ((?:(?!RANK \d).)*)", res.stdout)
    reports = [(int(r), k, m) for r, k, m in found]
    return res.stdout + res.stderr, pids, reports


@pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="no /dev/shm")
@pytest.mark.parametrize("wrap", [False, True], ids=["plain", "survivors-linger"])
@pytest.mark.parametrize("n,victim", [(2, 1), (3, 0)])
def test_peer_killed(n, victim, wrap):
    """A rank SIGKILLs itself mid-loop: the job ends in time, every survivor that reports
    raises PeerError naming the dead rank and its pid, and /dev/shm holds nothing new of ours.

    Plain mpiexec usually kills the survivors before they can report; under the linger
    wrapper (hydra sees the wrapper, not the dead rank) every survivor must report."""
    out, pids, reports = _run_victim(n, victim, "kill", wrap)
    # every rank got as far as the loop (so the kill happened mid-job), and no survivor ran
    # to the end without noticing; plain mpiexec may leave ``reports`` empty
    assert set(pids) == set(range(n)), out
    assert "never noticed" not in out, out
    for _rank, kind, msg in reports:
        assert kind == "PeerError", out
        assert f"rank {victim} (pid {pids[victim]}) died" in msg, out
    if wrap:
        assert {r for r, _, _ in reports} == set(range(n)) - {victim}, out
    assert not _ours(pids.values()), _ours(pids.values())


@pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="no /dev/shm")
@pytest.mark.parametrize("n,victim", [(2, 1), (3, 2)])
def test_peer_killed_while_its_shared_buffer_is_read(n, victim):
    """The same with shared buffers, which the peers read in the victim's memory."""
    out, pids, reports = _run_victim(n, victim, "kill", True, {"KILL_SHARED_BUFFERS": "1"})
    assert set(pids) == set(range(n)), out
    assert {r for r, _, _ in reports} == set(range(n)) - {victim}, out
    for _rank, kind, msg in reports:
        assert kind == "PeerError" and f"rank {victim} (pid {pids[victim]}) died" in msg, out
    assert not _ours(pids.values()), _ours(pids.values())


def test_peer_hangs():
    """A rank stops calling: the others give up after RINGRED_SHM_TIMEOUT_SECONDS."""
    out, pids, reports = _run_victim(2, 1, "hang", False, {"RINGRED_SHM_TIMEOUT_SECONDS": "1"})
    assert reports and reports[0][:2] == (0, "RingredTimeoutError"), out
    assert f"rank 1 (pid {pids[1]}) did not answer within 1 s" in reports[0][2], out


def test_bench_compares_transports():
    """The bench times both transports and MPI_Allreduce in one run."""
    env = worker_env()
    cmd = [mpiexec(), "-n", "2", sys.executable, "-m", "ringred.bench", "--max-bytes", "4096",
           "--rounds", "1", "--transports", "shm,mpi"]
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    head = res.stdout.splitlines()
    assert "transports shm, mpi" in head[0] and "transport in force: shm" in head[0], head[0]
    assert "ringred shm us" in head[1] and "ringred mpi us" in head[1], head[1]
    assert "MPI_Allreduce us" in head[1] and "shm/MPI" in head[1], head[1]
    assert any(line.strip().startswith("4 KiB") for line in head)


@pytest.mark.parametrize("transport", ["shm", "mpi"])
def test_info_shows_transport(transport):
    env = worker_env(RINGRED_TRANSPORT=transport)
    res = subprocess.run([sys.executable, "-m", "ringred.info"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    facts = dict(line.split(None, 1) for line in res.stdout.splitlines() if line.strip())
    assert facts["transport"].strip() == transport
    assert facts["RINGRED_TRANSPORT"].startswith(transport)


def test_transport_choice_errors():
    """An unknown transport, or ranks asking for different ones, fail init on every rank."""
    from mpi4py import MPI

    import ringred
    from ringred._state import Context

    with pytest.raises(ringred.RingredError, match="auto, shm or mpi"):
        Context(MPI.COMM_WORLD, "bogus")
    ctx = Context(MPI.COMM_WORLD, "mpi")
    assert ctx.transport == "mpi"
    ctx.close()
    code = ("import ringred\n"
            "try:\n    ringred.init()\n"
            "except ringred.RingredError as e:\n    print('INITERROR', e, flush=True)\n")
    env = worker_env()
    cmd = [mpiexec(), "-n", "1", "-env", "RINGRED_TRANSPORT", "shm", sys.executable, "-c", code,
           ":", "-n", "1", "-env", "RINGRED_TRANSPORT", "mpi", sys.executable, "-c", code]
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert res.stdout.count("INITERROR") == 2, res.stdout + res.stderr
    assert "different transports" in res.stdout


# Per transport: rank 0's settings and rank 1's, both far from the defaults and each other.
RANK_SETTINGS = {
    "shm": ({"RINGRED_SHM_SMALL_BYTES": "4096", "RINGRED_SHM_SLOT_BYTES": "16384",
             "RINGRED_SHM_STREAM_BYTES": "40000"},
            {"RINGRED_SHM_SMALL_BYTES": "65536", "RINGRED_SHM_SLOT_BYTES": "4096",
             "RINGRED_SHM_STREAM_BYTES": "0"}),
    "mpi": ({"RINGRED_SMALL_BYTES": "0", "RINGRED_SEGMENT_BYTES": "4096"},
            {"RINGRED_SMALL_BYTES": "1M", "RINGRED_SEGMENT_BYTES": "65536"}),
}


@pytest.mark.parametrize("transport", list(RANK_SETTINGS))
def test_rank_zero_settings_apply_everywhere(transport):
    """Ranks started with different settings use rank 0's where they shape the protocol
    (which path a size takes, how it is cut): otherwise they would wait on each other."""
    env = worker_env(RINGRED_TRANSPORT=transport, RINGRED_SHM_TIMEOUT_SECONDS="30")
    worker = [sys.executable, "-m", "tests.workers.stress", "120"]
    cmd = [mpiexec()]
    for rank, settings in enumerate(RANK_SETTINGS[transport]):
        if rank:
            cmd.append(":")
        cmd += ["-n", "1"]
        for k, v in settings.items():
            cmd += ["-env", k, v]
        cmd += worker
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]


@pytest.mark.parametrize("n", [1, 2, 3])
def test_shared_buffers(n):
    run_mpi(n, "shared", "full", env={"RINGRED_TRANSPORT": "shm"}, timeout=120)


@pytest.mark.parametrize("mode,env", [
    ("none", {"RINGRED_TRANSPORT": "mpi"}),
    ("none", {"RINGRED_TRANSPORT": "shm", "RINGRED_SHM_ARENA_BYTES": "0"}),
    ("tiny", {"RINGRED_TRANSPORT": "shm", "RINGRED_SHM_ARENA_BYTES": "4m"}),
], ids=["mpi-transport", "no-arena", "tiny-arena"])
def test_shared_buffers_fall_back(mode, env):
    run_mpi(2, "shared", mode, env=env, timeout=120)


def test_shared_buffers_before_init():
    import ringred

    if ringred.is_initialized():
        pytest.skip("initialized in this process")
    with pytest.raises(ringred.NotInitializedError):
        ringred.empty(4)


def test_file_size_limit_leaves_shm_without_arenas():
    """Under `ulimit -f` smaller than the arenas, the segment is made without them: shm
    still works, arrays are ordinary.  (Python ignores SIGXFSZ, so this takes the retry after
    a failed ftruncate; C programs are kept from SIGXFSZ by a getrlimit check first.)"""
    import resource

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 30, 1 << 30))

    cmd = [mpiexec(), "-n", "2", sys.executable, "-m", "tests.workers.shared", "none"]
    res = subprocess.run(cmd, cwd=ROOT, env=worker_env(RINGRED_TRANSPORT="shm"),
                         capture_output=True, text=True, timeout=120, preexec_fn=limit)
    assert res.returncode == 0 and "RANK 1 OK" in res.stdout, res.stdout + res.stderr
