"""Build a C check program of csrc/tests/ together with the whole core under ASan + UBSan."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def build_sanitized(tmp_dir: Path, check: str) -> Path:
    """Compile csrc/<layer>/*.c + csrc/tests/<check>.c with the sanitizers; skip without mpicc."""
    mpicc = Path(sys.executable).parent / "mpicc"
    if not mpicc.exists():
        pytest.skip("mpicc not found")
    out = tmp_dir / check
    srcs = sorted(str(p) for p in (ROOT / "csrc").glob("*/*.c") if p.parent.name != "tests")
    cmd = [str(mpicc), "-std=c11", "-D_GNU_SOURCE", "-O1", "-g", "-Wall", "-Wextra", "-Werror",
           "-fsanitize=address,undefined", "-fno-sanitize-recover=undefined",
           "-fno-omit-frame-pointer", f"-I{ROOT / 'csrc'}", *srcs,
           str(ROOT / "csrc" / "tests" / f"{check}.c"), "-o", str(out), "-lm", "-lpthread",
           "-ldl"]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-4000:]
    return out
