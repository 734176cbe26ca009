"""Timing helpers shared by the benchmarks: interleaved rounds, medians, bandwidths."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

from mpi4py import MPI


def iterations_for(nbytes: int, budget_s: float = 0.05) -> int:
    """Iterations per round so a round lasts roughly ``budget_s`` at ~2 GB/s + 5 µs."""
    est = 5e-6 + nbytes / 2e9
    return max(1, min(2000, int(budget_s / est)))


def time_round(fn: Callable[[], object], iters: int, comm: MPI.Comm) -> float:
    """Seconds per call of ``fn``, the slowest rank's view."""
    comm.Barrier()
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    dt = (time.perf_counter() - t0) / iters
    return comm.allreduce(dt, op=MPI.MAX)


def compare(fns: dict[str, Callable[[], object]], nbytes: int, rounds: int,
            comm: MPI.Comm,
            enter: dict[str, Callable[[], AbstractContextManager]] | None = None,
            iters: int | None = None) -> dict[str, float]:
    """Median seconds per call of each function; rounds interleave them to share noise.

    ``enter[name]()``, when given, is a context manager held (untimed) around each round of
    ``fns[name]``, e.g. to make a ringred context the active one.  ``iters``: calls per
    round (default: ``iterations_for(nbytes)``)."""
    iters = iters or iterations_for(nbytes)
    enter = enter or {}
    for name, fn in fns.items():  # warm-up
        with enter.get(name, nullcontext)():
            fn()
    samples: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            with enter.get(name, nullcontext)():
                samples[name].append(time_round(fn, iters, comm))
    return {k: statistics.median(v) for k, v in samples.items()}


def algbw(nbytes: int, seconds: float) -> float:
    """Algorithm bandwidth in GB/s."""
    return nbytes / seconds / 1e9 if seconds > 0 else float("inf")


def busbw(nbytes: int, seconds: float, n: int) -> float:
    """Bus bandwidth in GB/s: algbw * 2(n-1)/n (nccl-tests convention for allreduce)."""
    return algbw(nbytes, seconds) * (2 * (n - 1) / n if n > 1 else 1.0)


def human(nbytes: int) -> str:
    for unit, div in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if nbytes >= div and nbytes % div == 0:
            return f"{nbytes // div} {unit}"
    return f"{nbytes} B"


def engine_loop(items: list, submit: Callable[[int], object], held: dict | None = None,
                ) -> tuple[float, float]:
    """Submit every index of ``items`` (backward order), then wait for each handle; returns
    (submit seconds, wait seconds).  ``held["res"]`` keeps the results until the next call."""
    t0 = time.perf_counter()
    hs = [submit(i) for i in items]
    t1 = time.perf_counter()
    res = [h.wait() for h in hs]
    t2 = time.perf_counter()
    if held is not None:
        held["res"] = res
    return t1 - t0, t2 - t1
