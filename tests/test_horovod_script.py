"""A Horovod PyTorch script runs unchanged (apart from its import line) and trains exactly as
the same loop written with ringred.DistributedOptimizer."""

import re
import subprocess
import sys

import pytest

from .mpi import ROOT, mpiexec

pytest.importorskip("torch")
pytest.importorskip("sklearn")


def _digest(cmd: list[str]) -> str:
    import os

    env = dict(os.environ, PYTHONPATH=str(ROOT))
    res = subprocess.run([mpiexec(), "-n", "2", sys.executable, *cmd, "--epochs", "2"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    m = re.search(r"parameters digest ([0-9a-f]{40})", res.stdout)
    assert m, res.stdout
    return m.group(1), res.stdout


def test_horovod_script_matches_ringred_api():
    hv, out = _digest([str(ROOT / "examples" / "horovod_style.py")])
    assert "identical on all ranks: True" in out
    native, _ = _digest(["-m", "tests.workers.horovod_equiv"])
    assert hv == native
    assert "import ringred.torch as hvd" in (ROOT / "examples" / "horovod_style.py").read_text()
