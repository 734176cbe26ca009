"""Allreduce bandwidth sweep: ringred over each transport against MPI_Allreduce of the same
MPI, in the same run (rounds interleaved, medians)."""

from __future__ import annotations

from typing import Any

import numpy as np
from mpi4py import MPI

import ringred
from ringred import _state

from .timing import algbw, busbw, compare, human

DEFAULT_SIZES = [8 << i for i in range(0, 24, 1)]  # 8 B .. 64 MiB
BASELINE = "MPI_Allreduce"
SHARED = "+shared"  # label suffix: inputs from ringred.empty


def run_sweep(
    sizes: list[int],
    rounds: int,
    dtype: str = "float32",
    contexts: dict[str, _state.Context] | None = None,
    in_place: bool = False,
) -> list[dict]:
    """Measure every size; returns one row per size (rank 0's view of the medians).

    ``contexts`` maps a label (a transport name, ``+shared`` for inputs from
    :func:`ringred.empty`) to the ringred context to time; default: the active context,
    labelled with its transport.  Each row has ``bytes`` and, for every
    label and for ``MPI_Allreduce``, ``{label: {"us", "algbw", "busbw"}}``, plus
    ``ratio_<label>`` = MPI_Allreduce time / ringred time.  ``in_place``: every variant,
    MPI_Allreduce included (MPI_IN_PLACE), reduces its buffer in place (zeros, so that
    repeated sums stay finite).
    """
    comm = MPI.COMM_WORLD
    n = ringred.size()
    if contexts is None:
        cur = _state.current()
        contexts = {cur.transport: cur}
    rows = []
    for nbytes in sizes:
        dt = np.dtype(dtype)
        count = max(1, nbytes // dt.itemsize)
        x = np.zeros(count, dt) if in_place else np.ones(count, dt)
        y = x if in_place else np.empty_like(x)

        def rr(x: np.ndarray = x, y: np.ndarray = y) -> None:
            ringred.allreduce(x, op=ringred.Sum, out=y)

        def mpi(x: np.ndarray = x, y: np.ndarray = y) -> None:
            comm.Allreduce(MPI.IN_PLACE if x is y else x, y, op=MPI.SUM)

        fns: dict[str, Any] = {}
        for label, ctx in contexts.items():
            fns[label] = (shared_fn(ctx, count, dt, in_place) if label.endswith(SHARED)
                          else rr)
        fns[BASELINE] = mpi
        enter: dict[str, Any] = {label: (lambda c=c: _state.using(c))
                                 for label, c in contexts.items()}
        med = compare(fns, count * dt.itemsize, rounds, comm, enter)
        nb = count * dt.itemsize
        row: dict[str, Any] = {"bytes": nb}
        for label, sec in med.items():
            row[label] = {"us": sec * 1e6, "algbw": algbw(nb, sec), "busbw": busbw(nb, sec, n)}
        for label in contexts:
            row[f"ratio_{label}"] = med[BASELINE] / med[label]
        rows.append(row)
    return rows


def shared_fn(ctx: _state.Context, count: int, dt: np.dtype, in_place: bool = False) -> Any:
    """allreduce(x, out=y) with x a shared buffer of ``ctx`` (ringred.empty) and y an
    ordinary array like the other columns' (y is x when ``in_place``)."""
    with _state.using(ctx):
        xs = ringred.empty(count, dt)
    ys = xs if in_place else np.empty(count, dt)
    xs.fill(0 if in_place else 1)

    def rr() -> None:
        ringred.allreduce(xs, op=ringred.Sum, out=ys)

    return rr


def format_table(rows: list[dict], n: int, transport: str | None = None,
                 in_place: bool = False) -> str:
    """An nccl-tests-style table: time and bandwidths of each ringred transport and of
    MPI_Allreduce, and the speedups over MPI_Allreduce.  ``transport``: the one in force."""
    labels = [k for k in rows[0] if isinstance(rows[0][k], dict) and k != BASELINE] if rows else []
    cols = labels + [BASELINE]
    shown = ", ".join(labels)
    force = f"; transport in force: {transport}" if transport else ""
    how = ", in place (MPI_IN_PLACE)" if in_place else ""
    title = (f"# ringred allreduce (sum, float32{how}) over transports {shown} vs {BASELINE}, "
             f"{n} ranks, median of rounds{force}")
    head = f"{'size':>10}"
    for c in cols:
        name = c if c == BASELINE else f"ringred {c}"
        head += f" | {name + ' us':>16} {'busbw':>7}"
    head += " | " + " ".join(f"{c + '/MPI':>8}" for c in labels)
    lines = [title, head, "-" * len(head)]
    for r in rows:
        line = f"{human(r['bytes']):>10}"
        for c in cols:
            line += f" | {r[c]['us']:16.2f} {r[c]['busbw']:7.2f}"
        line += " | " + " ".join(f"{r['ratio_' + c]:7.2f}x" for c in labels)
        lines.append(line)
    lines.append("busbw in GB/s (algbw * 2(n-1)/n); <transport>/MPI = MPI_Allreduce time / "
                 "ringred time (>1: ringred faster)")
    return "\n".join(lines)


def contexts_for(transports: list[str]) -> dict[str, _state.Context]:
    """A ringred context per transport name (``shm+shared``: the shm context, timed with
    shared buffers); the active one is reused where it matches, one context per transport.
    Collective: every rank must pass the same list."""
    cur = _state.current()
    made: dict[str, _state.Context] = {cur.transport: cur}
    out: dict[str, _state.Context] = {}
    for t in transports:
        base = t.removesuffix(SHARED)
        if base not in made:
            made[base] = _state.Context(cur.mpi_comm, base)
        out[t] = made[base]
    return out

