"""The engine's C core (csrc/tests/engine_check.c) under AddressSanitizer + UBSan."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .mpi import mpiexec

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def engine_binary(tmp_path_factory):
    mpicc = Path(sys.executable).parent / "mpicc"
    if not mpicc.exists():
        pytest.skip("mpicc not found")
    out = tmp_path_factory.mktemp("asan") / "engine_check"
    srcs = sorted(str(p) for p in (ROOT / "csrc").glob("*.c"))
    cmd = [str(mpicc), "-std=c11", "-D_GNU_SOURCE", "-O1", "-g", "-Wall", "-Wextra", "-Werror",
           "-fsanitize=address,undefined", "-fno-sanitize-recover=undefined",
           "-fno-omit-frame-pointer", f"-I{ROOT / 'csrc'}", *srcs,
           str(ROOT / "csrc" / "tests" / "engine_check.c"), "-o", str(out), "-lm", "-lpthread",
           "-ldl"]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-4000:]
    return out


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
