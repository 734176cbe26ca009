"""Build a C check program of csrc/tests/ together with the whole core under ASan + UBSan.

The core's objects are compiled once per test run (in parallel) and shared by every check
program and every pytest-xdist worker: they live in the run's temporary folder, under a
name keyed by the compiler, the flags and the contents of csrc/, and a file lock makes
the other workers wait for the first one's build instead of compiling again."""

import fcntl
import hashlib
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

FLAGS = ["-std=c11", "-D_GNU_SOURCE", "-O1", "-g", "-Wall", "-Wextra", "-Werror",
         "-fsanitize=address,undefined", "-fno-sanitize-recover=undefined",
         "-fno-omit-frame-pointer"]
LIBS = ["-lm", "-lpthread", "-ldl"]


def _mpicc() -> Path:
    mpicc = Path(sys.executable).parent / "mpicc"
    if not mpicc.exists():
        pytest.skip("mpicc not found")
    return mpicc


def _key(mpicc: Path) -> str:
    """Changes with the compiler, the flags or any file under csrc/."""
    h = hashlib.sha256(" ".join([str(mpicc), *FLAGS]).encode())
    for p in sorted((ROOT / "csrc").rglob("*")):
        if p.is_file() and p.suffix in (".c", ".h"):
            h.update(str(p.relative_to(ROOT)).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()[:16]


def _shared_dir(tmp_path_factory) -> Path:
    """The run's temporary folder: under pytest-xdist the parent of the workers' own."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def _compile(mpicc: Path, src: str, obj: Path) -> str:
    res = subprocess.run([str(mpicc), *FLAGS, f"-I{ROOT / 'csrc'}", "-c", src, "-o", str(obj)],
                         capture_output=True, text=True)
    return "" if res.returncode == 0 else f"{src}:\n{res.stderr[-4000:]}"


def _core_objects(mpicc: Path, folder: Path) -> list[Path]:
    """csrc/<layer>/*.c compiled with the sanitizers into folder (once; the caller holds the
    lock)."""
    srcs = sorted(str(p) for p in (ROOT / "csrc").glob("*/*.c") if p.parent.name != "tests")
    objs = [folder / f"{i:03d}-{Path(s).stem}.o" for i, s in enumerate(srcs)]
    done = folder / "done"
    if not done.exists():
        folder.mkdir(parents=True, exist_ok=True)
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
            errors = [e for e in pool.map(_compile, [mpicc] * len(srcs), srcs, objs) if e]
        assert not errors, "\n".join(errors)
        done.write_text("\n".join(srcs))
    return objs


def build_sanitized(tmp_path_factory, check: str) -> Path:
    """csrc/<layer>/*.c + csrc/tests/<check>.c linked with the sanitizers; skip without
    mpicc."""
    mpicc = _mpicc()
    shared = _shared_dir(tmp_path_factory)
    folder = shared / f"asan-{_key(mpicc)}"
    out = folder / check
    with open(shared / "asan.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        objs = _core_objects(mpicc, folder)
        if not out.exists():
            tmp = folder / f"{check}.tmp"
            cmd = [str(mpicc), *FLAGS, f"-I{ROOT / 'csrc'}", *map(str, objs),
                   str(ROOT / "csrc" / "tests" / f"{check}.c"), "-o", str(tmp), *LIBS]
            res = subprocess.run(cmd, capture_output=True, text=True)
            assert res.returncode == 0, res.stderr[-4000:]
            tmp.rename(out)
    return out
