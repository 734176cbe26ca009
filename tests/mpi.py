"""Run a worker module under ``mpiexec -n N`` with a timeout; every rank must succeed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def mpiexec() -> str:
    beside = Path(sys.executable).parent / "mpiexec"
    if beside.exists():
        return str(beside)
    found = shutil.which("mpiexec")
    if not found:
        raise RuntimeError("mpiexec not found: install the mpich wheel")
    return found


def worker_env(**extra: str) -> dict[str, str]:
    """This environment with the checkout first on PYTHONPATH, unbuffered output, and extra."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.update(extra)
    return env


def run_mpi(
    n: int,
    module: str,
    *args: str,
    timeout: float = 120,
    env: dict[str, str] | None = None,
    expect_ok: bool = True,
) -> subprocess.CompletedProcess:
    """Run ``python -m tests.workers.<module> args`` on n ranks and return the result.

    With expect_ok (default) the test fails unless every rank exits 0 and prints
    ``RANK <r> OK``.  A hang is a failure after ``timeout`` seconds.
    """
    full_env = worker_env(**(env or {}))
    cmd = [mpiexec(), "-n", str(n), sys.executable, "-m", f"tests.workers.{module}", *args]
    try:
        res = subprocess.run(
            cmd, cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"").decode(errors="replace") if isinstance(exc.stdout, bytes) else (
            exc.stdout or "")
        err = (exc.stderr or b"").decode(errors="replace") if isinstance(exc.stderr, bytes) else (
            exc.stderr or "")
        raise AssertionError(
            f"{' '.join(cmd[3:])} on {n} ranks hung for {timeout}s\nstdout:\n{out[-4000:]}\n"
            f"stderr:\n{err[-4000:]}"
        ) from None
    if expect_ok:
        ok = all(f"RANK {r} OK" in res.stdout for r in range(n))
        assert res.returncode == 0 and ok, (
            f"{module} {' '.join(args)} failed on {n} ranks (rc={res.returncode})\n"
            f"stdout:\n{res.stdout[-6000:]}\nstderr:\n{res.stderr[-6000:]}"
        )
    return res
