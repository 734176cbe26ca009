"""Allreduce bandwidth sweep: ringred against MPI_Allreduce of the same MPI, same run."""

from __future__ import annotations

import numpy as np
from mpi4py import MPI

import ringred

from .timing import algbw, busbw, compare, human

DEFAULT_SIZES = [8 << i for i in range(0, 24, 1)]  # 8 B .. 64 MiB


def run_sweep(sizes: list[int], rounds: int, dtype: str = "float32") -> list[dict]:
    """Measure every size; returns one row per size (rank 0's view of the medians)."""
    comm = MPI.COMM_WORLD
    n = ringred.size()
    rows = []
    for nbytes in sizes:
        dt = np.dtype(dtype)
        count = max(1, nbytes // dt.itemsize)
        x = np.ones(count, dt)
        y = np.empty_like(x)

        def rr(x: np.ndarray = x, y: np.ndarray = y) -> None:
            ringred.allreduce(x, op=ringred.Sum, out=y)

        def mpi(x: np.ndarray = x, y: np.ndarray = y) -> None:
            comm.Allreduce(x, y, op=MPI.SUM)

        med = compare({"ringred": rr, "mpi": mpi}, count * dt.itemsize, rounds, comm)
        nb = count * dt.itemsize
        rows.append({
            "bytes": nb,
            "ringred_us": med["ringred"] * 1e6,
            "mpi_us": med["mpi"] * 1e6,
            "ringred_algbw": algbw(nb, med["ringred"]),
            "ringred_busbw": busbw(nb, med["ringred"], n),
            "mpi_algbw": algbw(nb, med["mpi"]),
            "mpi_busbw": busbw(nb, med["mpi"], n),
            "ratio": med["mpi"] / med["ringred"],
        })
    return rows


def format_table(rows: list[dict], n: int) -> str:
    """An nccl-tests-style table."""
    head = (f"# ringred allreduce (sum, float32) vs MPI_Allreduce, {n} ranks, median of rounds\n"
            f"{'size':>10} | {'ringred us':>11} {'algbw':>7} {'busbw':>7} | "
            f"{'MPI us':>11} {'algbw':>7} {'busbw':>7} | {'ratio':>6}")
    lines = [head, "-" * len(head.splitlines()[-1])]
    for r in rows:
        lines.append(
            f"{human(r['bytes']):>10} | {r['ringred_us']:11.2f} {r['ringred_algbw']:7.2f} "
            f"{r['ringred_busbw']:7.2f} | {r['mpi_us']:11.2f} {r['mpi_algbw']:7.2f} "
            f"{r['mpi_busbw']:7.2f} | {r['ratio']:6.2f}x"
        )
    lines.append("bandwidths in GB/s; ratio = MPI time / ringred time (>1: ringred faster)")
    return "\n".join(lines)
