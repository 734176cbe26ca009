"""ringred.jax on 1-3 ranks and examples/jax_mlp.py under mpiexec -n 2 (skipped without
jax and optax: ``make test-jax`` runs them in their own virtualenv)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from .mpi import ROOT, mpiexec, run_mpi, worker_env

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("jax") is None or importlib.util.find_spec("optax") is None,
    reason="jax and optax are not installed (make test-jax installs them in .venv-jax)")


@pytest.mark.parametrize("n", [1, 2, 3])
def test_jax_api(n):
    run_mpi(n, "jax_api", timeout=300)


def test_jax_example():
    cmd = [mpiexec(), "-n", "2", sys.executable, str(ROOT / "examples" / "jax_mlp.py"),
           "--epochs", "1", "--samples", "2048", "--lr", "3e-3", "--min-accuracy", "0.6"]
    res = subprocess.run(cmd, cwd=ROOT, env=worker_env(), capture_output=True, text=True,
                         timeout=240)
    assert res.returncode == 0, f"{res.stdout[-4000:]}\n{res.stderr[-4000:]}"
    assert "parameters identical on all 2 ranks: True" in res.stdout
