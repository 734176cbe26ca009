"""``--hosts H``: this machine posed as H hosts (``RINGRED_HOST``), the hierarchical allreduce
against the flat MPI transport and ``MPI_Allreduce``, rounds interleaved, medians.

Columns: ``hier`` (the plan as configured: allreduces up to ``RINGRED_SMALL_BYTES`` take the
flat small-message path), ``hier-all`` (every size through the two-level plan,
``RINGRED_SMALL_BYTES=0``), ``flat`` (``RINGRED_HIERARCHICAL=0``: the MPI transport's ring and
recursive doubling over all ranks)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from mpi4py import MPI

from ringred import _state

from .sweep import BASELINE, run_sweep
from .timing import human

HOST_SIZES = [4 << (2 * i) for i in range(5, 13)]  # 4 KiB, 16 KiB, ... 64 MiB


def host_label(rank: int, size: int, hosts: int) -> str:
    """The simulated host of ``rank``: contiguous blocks, as even as possible."""
    return f"host{rank * hosts // size}"


def pose_as_hosts(hosts: int) -> None:
    """Set this rank's ``RINGRED_HOST`` (before ``ringred.init()``)."""
    comm = MPI.COMM_WORLD
    os.environ["RINGRED_HOST"] = host_label(comm.Get_rank(), comm.Get_size(), hosts)


@contextlib.contextmanager
def _env(**values: str) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def host_contexts() -> dict[str, _state.Context]:
    """The three communicators of the comparison (collective)."""
    comm = _state.current().mpi_comm
    with _env(RINGRED_HIERARCHICAL="1"):
        hier = _state.Context(comm)
        with _env(RINGRED_SMALL_BYTES="0"):
            hier_all = _state.Context(comm)
    with _env(RINGRED_HIERARCHICAL="0"):
        flat = _state.Context(comm, "mpi")
    return {"hier": hier, "hier-all": hier_all, "flat": flat}


def run_hosts(sizes: list[int], rounds: int, dtype: str = "float32") -> list[dict]:
    """run_sweep over host_contexts(); each row gains ``flat_over_<label>``: flat time /
    that variant's time (>1: faster than the flat MPI transport), same run."""
    contexts = host_contexts()
    try:
        rows = run_sweep(sizes, rounds, dtype, contexts)
    finally:
        for ctx in contexts.values():
            ctx.close()
    for row in rows:
        for label in ("hier", "hier-all"):
            row[f"flat_over_{label}"] = row["flat"]["us"] / row[label]["us"]
    return rows


def format_hosts(rows: list[dict], n: int, hosts: int) -> str:
    """Times (us) of each variant and the same-run ratios."""
    title = (f"# allreduce (sum, float32), {n} ranks posed as {hosts} hosts (RINGRED_HOST), "
             "median of interleaved rounds")
    head = (f"{'size':>10} | {'hier us':>10} {'hier-all us':>12} {'flat us':>10} "
            f"{BASELINE + ' us':>17} | {'flat/hier':>9} {'flat/hier-all':>13} "
            f"{'MPI/hier':>9}")
    lines = [title, head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{human(r['bytes']):>10} | {r['hier']['us']:10.1f} {r['hier-all']['us']:12.1f} "
            f"{r['flat']['us']:10.1f} {r[BASELINE]['us']:17.1f} | "
            f"{r['flat_over_hier']:8.2f}x {r['flat_over_hier-all']:12.2f}x "
            f"{r['ratio_hier']:8.2f}x")
    lines.append("hier: sizes up to RINGRED_SMALL_BYTES take the flat small-message path; "
                 "hier-all: every size through the two-level plan; flat: "
                 "RINGRED_HIERARCHICAL=0 (MPI transport); flat/hier = flat time / hier time "
                 "(>1: hier faster), MPI/hier = MPI_Allreduce time / hier time")
    return "\n".join(lines)
