"""Allreduce bandwidth through pytest-benchmark: ringred and MPI_Allreduce side by side.

    mpiexec -n 2 python -m pytest benchmarks --benchmark-only

algbw / busbw (GB/s, from the median) are in each result's ``extra_info``;
busbw = algbw * 2(n-1)/n.  Set RINGRED_BENCH_SIZES (comma-separated bytes) to change sizes.
"""

import os

import numpy as np
import pytest
from mpi4py import MPI

import ringred
from ringred.bench.timing import algbw, busbw

SIZES = [int(s) for s in os.environ.get(
    "RINGRED_BENCH_SIZES", "8,4096,65536,1048576,4194304,67108864").split(",")]
ROUNDS = int(os.environ.get("RINGRED_BENCH_ROUNDS", "15"))


def _iterations(nbytes: int) -> int:
    return max(1, min(200, (8 << 20) // max(nbytes, 1)))


def _run(benchmark, fn, nbytes: int, impl: str) -> None:
    comm = MPI.COMM_WORLD
    iters = _iterations(nbytes)

    def synced() -> None:
        fn()

    comm.Barrier()
    benchmark.pedantic(synced, rounds=ROUNDS, iterations=iters, warmup_rounds=1)
    med = benchmark.stats.stats.median
    n = ringred.size()
    benchmark.extra_info.update({
        "impl": impl, "bytes": nbytes, "ranks": n,
        "algbw_GBps": algbw(nbytes, med), "busbw_GBps": busbw(nbytes, med, n),
    })


@pytest.mark.parametrize("nbytes", SIZES)
def test_ringred_allreduce(benchmark, nbytes):
    x = np.ones(max(1, nbytes // 4), np.float32)
    y = np.empty_like(x)
    benchmark.group = f"allreduce {nbytes} B"
    _run(benchmark, lambda: ringred.allreduce(x, op=ringred.Sum, out=y), x.nbytes, "ringred")


@pytest.mark.parametrize("nbytes", SIZES)
def test_ringred_allreduce_shared(benchmark, nbytes):
    """The same with shared buffers (ringred.empty): read in place by the shm transport."""
    x = ringred.empty(max(1, nbytes // 4), np.float32)
    x.fill(1)
    y = ringred.empty_like(x)
    benchmark.group = f"allreduce {nbytes} B"
    _run(benchmark, lambda: ringred.allreduce(x, op=ringred.Sum, out=y), x.nbytes,
         "ringred (shared buffers)")


@pytest.mark.parametrize("nbytes", SIZES)
def test_mpi_allreduce(benchmark, nbytes):
    x = np.ones(max(1, nbytes // 4), np.float32)
    y = np.empty_like(x)
    benchmark.group = f"allreduce {nbytes} B"
    _run(benchmark, lambda: MPI.COMM_WORLD.Allreduce(x, y, op=MPI.SUM), x.nbytes, "MPI_Allreduce")
