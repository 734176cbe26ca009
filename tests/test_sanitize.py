"""The C core built with AddressSanitizer + UndefinedBehaviorSanitizer, run on 2 and 3 ranks."""

import os
import subprocess
from pathlib import Path

import pytest

from .asan import build_sanitized
from .mpi import mpiexec

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def sanitized_binary(tmp_path_factory):
    return build_sanitized(tmp_path_factory, "collective_check")


ENVS = {
    "mpi": {"RINGRED_TRANSPORT": "mpi"},
    "mpi-ring-4k": {"RINGRED_TRANSPORT": "mpi", "RINGRED_SMALL_BYTES": "0",
                    "RINGRED_SEGMENT_BYTES": "4096"},
    "shm": {"RINGRED_TRANSPORT": "shm"},
    "shm-chunks-4k": {"RINGRED_TRANSPORT": "shm", "RINGRED_SHM_SMALL_BYTES": "0",
                      "RINGRED_SHM_SLOT_BYTES": "4096"},
    "shm-slices-4k": {"RINGRED_TRANSPORT": "shm", "RINGRED_SHM_SMALL_BYTES": "0",
                      "RINGRED_SHM_SLOT_BYTES": "4096", "RINGRED_SHM_STREAM_BYTES": "1"},
}


@pytest.mark.parametrize("hosts", [(2, 2), (2, 1)], ids=["2+2", "2+1"])
def test_hierarchical_under_sanitizers(sanitized_binary, hosts):
    """Simulated hosts (RINGRED_HOST per block of the MPMD command line), every allreduce
    through the two-level plan."""
    e = dict(os.environ, ASAN_OPTIONS="detect_leaks=0:abort_on_error=1",
             UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1", RINGRED_SMALL_BYTES="0",
             CHECK_HIERARCHICAL="1")
    cmd = [mpiexec()]
    for i, k in enumerate(hosts):
        cmd += [":"] if i else []
        cmd += ["-n", str(k), "-env", "RINGRED_HOST", f"host{i}", str(sanitized_binary)]
    res = subprocess.run(cmd, env=e, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and "collective_check: OK" in res.stdout, (
        res.stdout[-3000:] + res.stderr[-5000:])


@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("env", list(ENVS.values()), ids=list(ENVS))
def test_collectives_under_sanitizers(sanitized_binary, n, env):
    e = dict(os.environ, ASAN_OPTIONS="detect_leaks=0:abort_on_error=1",
             UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1", **env)
    res = subprocess.run([mpiexec(), "-n", str(n), str(sanitized_binary)], env=e,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and "collective_check: OK" in res.stdout, (
        res.stdout[-3000:] + res.stderr[-5000:])
