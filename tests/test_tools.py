"""The user-facing tools: info, bench, pytest-benchmark file, the demo example."""

import os
import re
import subprocess
import sys

from .mpi import ROOT, mpiexec


def _env():
    # without pytest-xdist's variables: a pytest run inside a worker is not an xdist worker
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST")}
    return dict(env, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")


def test_info_prints_build_and_settings():
    res = subprocess.run([sys.executable, "-m", "ringred.info"], env=_env(), capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    for word in ("mpi library", "cpu kernels", "RINGRED_SEGMENT_BYTES"):
        assert word in res.stdout


def test_bench_table():
    res = subprocess.run(
        [mpiexec(), "-n", "2", sys.executable, "-m", "ringred.bench", "--max-bytes", "65536",
         "--rounds", "2"], env=_env(), capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "busbw" in res.stdout and "64 KiB" in res.stdout, res.stdout
    # the last column is ringred's speed-up over MPI_Allreduce: a positive ratio "1.23x"
    row = next(line for line in res.stdout.splitlines() if line.strip().startswith("64 KiB"))
    assert re.search(r"\b\d+\.\d+x\b", row), row


def test_pytest_benchmark_file_runs():
    env = dict(_env(), RINGRED_BENCH_SIZES="8,65536", RINGRED_BENCH_ROUNDS="2")
    res = subprocess.run(
        [mpiexec(), "-n", "2", sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         str(ROOT / "benchmarks"), "--benchmark-only"], env=env, cwd=ROOT,
        capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "6 passed" in res.stdout  # ringred, ringred with shared buffers, MPI; 2 sizes


def test_linear_regression_demo():
    res = subprocess.run(
        [mpiexec(), "-n", "2", sys.executable, str(ROOT / "examples" / "linear_regression.py")],
        env=_env(), capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "identical on all 2 ranks: True" in res.stdout
    losses = [float(line.split()[-1]) for line in res.stdout.splitlines() if "loss" in line]
    assert losses[-1] < losses[0] / 100
