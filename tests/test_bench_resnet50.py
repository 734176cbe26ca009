"""``python -m ringred.bench --workload resnet50`` on CPU, shrunk (smoke test: every variant
runs, checks its results, and the report carries ratios and phase breakdowns; times are
not asserted)."""

import json
import subprocess
import sys

import pytest

from .mpi import mpiexec, worker_env


def test_resnet50_bench_smoke(tmp_path):
    pytest.importorskip("torch")
    js = tmp_path / "r.json"
    cmd = [mpiexec(), "-n", "2", sys.executable, "-m", "ringred.bench", "--workload",
           "resnet50", "--shrink", "2000", "--rounds", "3", "--lat-iters", "20", "--json",
           str(js)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=worker_env())
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    out = json.loads(js.read_text())["resnet50"]
    v = out["variants"]
    for key in ("inplace", "new", "out", "shared", "torch_inplace", "torch_new", "step"):
        assert v[key]["median_s"] > 0 and v[key]["ratio"] > 0, key
    for key in ("inplace", "new", "torch_inplace"):
        ph = v[key]["phases"]
        assert ph["fused"] + ph["direct"] == out["tensors"], (key, ph)
        assert ph["reduce_s"] >= 0 and ph["negotiate_s"] >= 0
    assert set(out["lat4k"]) >= {"async", "sync", "mpi", "torch_async_"}
    assert "phases per round" in res.stdout and "MPI/ringred" in res.stdout
