"""The device benchmarks' code paths without a GPU: ``python -m ringred.bench --device fake``
(torch CPU tensors through ringred's device path on the fake backend; tiny sizes, one round)
and the table of benchmarks/gpu_bench.py.  The times of these runs mean nothing."""

import json
import subprocess
import sys

import pytest

from .mpi import ROOT, mpiexec, worker_env

pytest.importorskip("torch")


def _bench(tmp_path, *args: str) -> tuple[str, dict]:
    out = tmp_path / "bench.json"
    res = subprocess.run(
        [mpiexec(), "-n", "2", sys.executable, "-m", "ringred.bench", "--device", "fake",
         "--rounds", "1", "--json", str(out), *args],
        cwd=ROOT, env=worker_env(), capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res.stdout, json.loads(out.read_text())


def test_resnet50_fake_device(tmp_path):
    out, js = _bench(tmp_path, "--workload", "resnet50", "--shrink", "2000", "--lat-iters", "2")
    res = js["resnet50"]
    assert res["tensors"] == 161 and res["device"] == "fake"
    for k in ("engine", "sync_per_tensor", "naive_per_tensor", "naive_concat", "lat4k_async",
              "lat4k_sync", "lat4k_naive"):
        assert res[k] > 0, k
    assert res["transport"] in ("ipc", "staged"), res["transport"]
    assert "engine speedup" in out and "device transport" in out


def test_train_fake_device(tmp_path):
    out, js = _bench(tmp_path, "--workload", "train", "--steps", "1", "--batch", "4",
                     "--width", "16")
    assert js["device"] == "fake" and js["same_weights"] is True
    assert set(js["median_s"]) == {"ringred", "mpi4py", "compute"}
    assert "ratio ringred / mpi4py" in out


def test_gpu_bench_table(tmp_path):
    """--table merges runs: speedups within a run, transports and errors as notes."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import gpu_bench
    finally:
        sys.path.pop(0)
    row = {"bytes": 4096, "times": {"ringred ipc": 1e-4, "ringred staged": 2e-4,
                                    "naive": 4e-4, "host": 1e-5}, "errors": {}}
    run = {"kind": "ringred", "ranks": 2, "gpu": "test input", "cuda_aware": False,
           "columns": {"ringred ipc": {"requested": "ipc", "transport": "ipc", "reason": "r"},
                       "ringred staged": {"requested": "staged", "transport": "ipc",
                                          "reason": "why"}},
           "rows": [row, {"bytes": 1 << 20, "times": {"naive": 1e-3},
                          "errors": {"ringred ipc": "rank 1: wrong result"}}]}
    (tmp_path / "a.json").write_text(json.dumps(run))
    (tmp_path / "n.json").write_text(json.dumps({"kind": "nccl", "times": {},
                                                 "error": "NcclError: duplicate GPU"}))
    text = gpu_bench.table([str(tmp_path / "a.json"), str(tmp_path / "n.json")])
    assert "4.00x" in text and "2.00x" in text  # ipc / naive, staged / ipc
    assert "WRONG" in text and "NOT the requested transport" in text
    assert "NCCL: n/a (NcclError: duplicate GPU)" in text
    md = gpu_bench.table([str(tmp_path / "a.json")], markdown=True)
    assert md.count("\n| ") >= 3 and "NCCL: not run" in md
