"""The CUDA IPC transport on the fake device backend: the protocol, the chunking and the
kernels' arithmetic on 1-4 ranks with random delays, planted ordering bugs, the fallback to
staging, and a peer that dies while its memory is mapped."""

from __future__ import annotations

import os

import pytest

from .mpi import run_mpi
from .test_shm import _ours, _run_victim

# 4 KiB chunks: every size above a few KiB takes many chunks through the two slots
# (two-shot chunks; the last chunk of a call and small calls, up to 1 KiB, in one shot)
IPC = {"RINGRED_DEVICE_TRANSPORT": "ipc", "RINGRED_IPC_CHUNK_BYTES": "4096",
       "RINGRED_IPC_ONESHOT_BYTES": "1024", "RINGRED_IPC_MIN_BYTES": "0"}


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_ipc_matches_host_bit_for_bit(n):
    run_mpi(n, "device_ipc", "matrix", env=IPC, timeout=400)


def test_ipc_three_slots_two_shot_only():
    run_mpi(2, "device_ipc", "matrix",
            env={"RINGRED_DEVICE_TRANSPORT": "ipc", "RINGRED_IPC_SLOTS": "3",
                 "RINGRED_IPC_CHUNK_BYTES": "65536", "RINGRED_IPC_ONESHOT_BYTES": "0",
                 "RINGRED_IPC_MIN_BYTES": "0"},
            timeout=400)


@pytest.mark.parametrize("n", [2, 3])
def test_ipc_ordering(n):
    run_mpi(n, "device_ipc", "ordering", env=IPC, timeout=120)


@pytest.mark.parametrize("plant", ["ipc_no_event_wait", "ipc_no_flag_wait"])
def test_planted_ipc_ordering_bugs_are_caught(plant):
    """Reducing before the peers' copies are done (no wait on their events), or waiting on
    an event before its owner announced the record (no flag wait), gives wrong results."""
    res = run_mpi(2, "device_ipc", "ordering", env={**IPC, "RINGRED_TEST_PLANT": plant},
                  timeout=120, expect_ok=False)
    assert res.returncode != 0 and "wrong result" in res.stdout + res.stderr, (
        res.stdout[-2000:] + res.stderr[-2000:])


@pytest.mark.parametrize("env", [{"RINGRED_TRANSPORT": "mpi"},
                                 {"RINGRED_DEVICE_TRANSPORT": "staged"}],
                         ids=["no-shm", "staged"])
def test_ipc_fallback(env):
    run_mpi(2, "device_ipc", "fallback", env=env, timeout=120)


def test_ipc_forced_without_shm_fails_on_every_rank():
    res = run_mpi(2, "device_ipc", "fallback", env={"RINGRED_TRANSPORT": "mpi",
                                                    "RINGRED_DEVICE_TRANSPORT": "ipc"},
                  timeout=120, expect_ok=False)
    out = res.stdout + res.stderr
    assert res.returncode != 0 and "RINGRED_DEVICE_TRANSPORT=ipc" in out, out[-3000:]


@pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="no /dev/shm")
@pytest.mark.parametrize("n,victim", [(2, 1), (3, 0)])
def test_peer_killed_while_its_device_memory_is_mapped(n, victim):
    """A rank dies in a loop of IPC allreduces: every survivor raises PeerError naming it
    within 30 s, and nothing of ours is left in /dev/shm."""
    env = {"KILL_DEVICE": "1", "KILL_AT": "60", **IPC, "RINGRED_IPC_CHUNK_BYTES": "65536"}
    out, pids, reports = _run_victim(n, victim, "kill", True, env)
    assert set(pids) == set(range(n)), out
    assert {r for r, _, _ in reports} == set(range(n)) - {victim}, out
    for _rank, kind, msg in reports:
        assert kind == "PeerError" and f"rank {victim} (pid {pids[victim]}) died" in msg, out
    assert not _ours(pids.values()), _ours(pids.values())
