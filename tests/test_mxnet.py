"""ringred.mxnet on 1-3 ranks and examples/mxnet_gluon.py under mpiexec -n 2 (skipped
without mxnet: ``make test-mxnet`` runs them in their own virtualenv, MXNet 1.9.1 with
NumPy < 1.24)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from .mpi import ROOT, mpiexec, run_mpi, worker_env

pytestmark = pytest.mark.skipif(importlib.util.find_spec("mxnet") is None,
                                reason="mxnet is not installed (make test-mxnet installs it "
                                       "in .venv-mxnet)")


@pytest.mark.parametrize("n", [1, 2, 3])
def test_mxnet_api(n):
    run_mpi(n, "mxnet_api", timeout=300)


@pytest.mark.parametrize("mode", [[], ["--kvstore"]])
def test_mxnet_example(mode):
    cmd = [mpiexec(), "-n", "2", sys.executable, str(ROOT / "examples" / "mxnet_gluon.py"),
           "--epochs", "1", "--samples", "1024", *mode]
    res = subprocess.run(cmd, cwd=ROOT, env=worker_env(), capture_output=True, text=True,
                         timeout=240)
    assert res.returncode == 0, f"{res.stdout[-4000:]}\n{res.stderr[-4000:]}"
    for name in ("gd", "momentum", "adam"):
        assert f"{name}: parameters identical on all 2 ranks: True" in res.stdout
