"""The fake device backend's memory, copies, events, CUDA-IPC imitation and kernel launches
(csrc/tests/device_check.c) under AddressSanitizer + UBSan on 2 and 3 ranks."""

import os
import subprocess

import pytest

from .asan import build_sanitized
from .mpi import mpiexec


@pytest.fixture(scope="module")
def device_binary(tmp_path_factory):
    return build_sanitized(tmp_path_factory, "device_check")


@pytest.mark.parametrize("n", [2, 3])
def test_fake_device_backend_under_sanitizers(device_binary, n):
    e = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=1",
             UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1")
    res = subprocess.run([mpiexec(), "-n", str(n), str(device_binary)], env=e,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and "device_check: OK" in res.stdout, (
        res.stdout[-3000:] + res.stderr[-5000:])


@pytest.fixture(scope="module")
def ipc_binary(tmp_path_factory):
    return build_sanitized(tmp_path_factory, "device_ipc_check")


def test_fake_device_ipc_between_forked_processes(ipc_binary):
    """The same program runs on a GPU machine as `device_ipc_check cuda` (see its header)."""
    e = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=1",
             UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1")
    res = subprocess.run([str(ipc_binary), "fake"], env=e, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0 and "device_ipc_check: OK" in res.stdout, (
        res.stdout[-3000:] + res.stderr[-5000:])
