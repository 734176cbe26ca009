"""The engine's C core (csrc/tests/engine_check.c) under AddressSanitizer + UBSan."""

import os
import subprocess
from pathlib import Path

import pytest

from .asan import build_sanitized
from .mpi import mpiexec

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def engine_binary(tmp_path_factory):
    return build_sanitized(tmp_path_factory, "engine_check")


@pytest.mark.parametrize("n,env", [
    # a cache far smaller than the live names, tiny fusion buffers, every message on the ring
    (3, {"RINGRED_CACHE_CAPACITY": "2", "RINGRED_FUSION_THRESHOLD": "4096",
         "RINGRED_SMALL_BYTES": "0", "RINGRED_SEGMENT_BYTES": "4096"}),
])
def test_engine_under_sanitizers(engine_binary, n, env):
    e = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=1",
             UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1", **env)
    res = subprocess.run([mpiexec(), "-n", str(n), str(engine_binary)], env=e,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and "engine_check: OK" in res.stdout, (
        res.stdout[-3000:] + res.stderr[-5000:])
