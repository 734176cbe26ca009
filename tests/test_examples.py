"""The examples run under mpiexec -n 2, train, and end with identical parameters (exit 0);
the training benchmark runs (tiny)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from .mpi import ROOT, mpiexec, worker_env

HAS_TORCH = importlib.util.find_spec("torch") is not None
HAS_SKLEARN = importlib.util.find_spec("sklearn") is not None


def run_example(script: str, *args: str, timeout: float = 180) -> str:
    env = worker_env()
    cmd = [mpiexec(), "-n", "2", sys.executable, str(ROOT / "examples" / script), *args]
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=timeout)
    assert res.returncode == 0, f"{script} failed\n{res.stdout[-4000:]}\n{res.stderr[-4000:]}"
    return res.stdout


def test_linear_regression():
    out = run_example("linear_regression.py", "--epochs", "20")
    assert "identical on all 2 ranks: True" in out


def test_linear_regression_optim():
    out = run_example("linear_regression_optim.py", "--epochs", "30")
    for name in ("gd", "momentum", "adam"):
        assert f"{name} (lr" in out
    assert out.count("identical on all 2 ranks: True") == 3


def test_mlp_numpy():
    out = run_example("mlp_numpy.py", "--epochs", "3", "--samples", "1000")
    assert "weights identical on all 2 ranks: True" in out
    out = run_example("mlp_numpy.py", "--epochs", "2", "--samples", "1000", "--average-every",
                      "4", "--optimizer", "momentum")
    assert "weights averaged every 4 steps" in out and "identical on all 2 ranks: True" in out


@pytest.mark.skipif(not (HAS_TORCH and HAS_SKLEARN),
                    reason="needs torch and scikit-learn (pip install .[examples])")
def test_torch_classifier():
    out = run_example("torch_classifier.py", "--optimizer", "adam", "--epochs", "1",
                      "--min-accuracy", "0.5",
                      timeout=240)
    assert "parameters identical on all 2 ranks: True" in out


@pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed")
def test_train_benchmark_smoke():
    env = worker_env()
    cmd = [mpiexec(), "-n", "2", sys.executable, "-m", "ringred.bench", "--workload", "train",
           "--rounds", "1", "--steps", "2", "--width", "64"]
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-4000:]
    assert "ratio ringred / mpi4py" in res.stdout
    assert "weights identical between ringred and mpi4py runs: True" in res.stdout
