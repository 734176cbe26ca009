"""Alltoall with optional per-destination splits of the first dimension."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from ._arrays import as_array, contiguous, is_torch
from .objects import allgather_object
from .process_sets import ProcessSet, context_of


def alltoall(x: Any, splits: Any = None, name: str | None = None,
             process_set: ProcessSet | None = None) -> tuple[Any, np.ndarray]:
    """Send ``splits[i]`` rows of ``x`` (in order) to rank i; return what every rank sent
    here, concatenated in rank order, and the received row counts.

    ``splits`` defaults to an even split (the first dimension must then divide evenly).
    """
    ctx = context_of(process_set)
    with ctx.serial:  # one call at a time per communicator, like the other collectives
        return _alltoall(ctx, x, splits, name, process_set)


def _alltoall(ctx: Any, x: Any, splits: Any, name: Any,
              process_set: ProcessSet | None) -> tuple[Any, np.ndarray]:
    comm = ctx.dup_comm("alltoall")
    n = ctx.size
    label = f"alltoall '{name}'" if name else "alltoall"
    # The calling thread's name travels with the layout: calls of different threads never
    # pair up across ranks (as in the agreement of the other collectives).
    thread = threading.current_thread().name
    # Local checks first, then every rank learns every rank's verdict and row layout before
    # any data moves: bad input on one rank fails the call everywhere instead of hanging.
    w = src = send_rows = None
    problem: BaseException | None = None
    try:
        w, src, send_rows = _local(x, splits, n, label)
        meta: Any = (src.shape[1:], str(src.dtype), thread)
    except Exception as e:
        problem, meta = e, None
    # The layouts travel through ringred's own allgather, so its agreement pairs this call
    # only with an alltoall layout exchange on the other ranks: a rank that is in another
    # collective meanwhile fails both with a MismatchError instead of leaving one in MPI.
    metas = allgather_object(meta if problem is None else f"{type(problem).__name__}: {problem}",
                             process_set=process_set)
    _agree(metas, problem, label)
    recv_rows = np.empty(n, np.int64)
    comm.Alltoall(send_rows, recv_rows)
    try:
        out = np.empty((int(recv_rows.sum()),) + src.shape[1:], src.dtype)
    except Exception as e:
        problem = e
    _agree(comm.allgather(None if problem is None else f"{type(problem).__name__}: {problem}"),
           problem, label)
    row_bytes = int(np.prod(src.shape[1:], dtype=np.int64)) * src.itemsize
    sb = src.reshape(-1).view(np.uint8)
    rb = out.reshape(-1).view(np.uint8)
    scounts = send_rows * row_bytes
    rcounts = recv_rows * row_bytes
    sdispl = np.concatenate(([0], np.cumsum(scounts)[:-1]))
    rdispl = np.concatenate(([0], np.cumsum(rcounts)[:-1]))
    from mpi4py import MPI

    comm.Alltoallv([sb, (scounts, sdispl), MPI.BYTE], [rb, (rcounts, rdispl), MPI.BYTE])
    return w.back(out), recv_rows


def _local(x: Any, splits: Any, n: int, label: str) -> tuple[Any, np.ndarray, np.ndarray]:
    """This rank's wrapped input, its contiguous array and the per-destination row counts
    (ValueError if bad)."""
    w = as_array(x)
    src = contiguous(w.arr)
    if src.ndim == 0:
        raise ValueError(f"{label}: 0-d arrays are not supported; reshape to (1,)")
    rows = src.shape[0]
    if splits is None:
        if rows % n:
            raise ValueError(f"{label}: first dimension {rows} is not divisible by {n} ranks; "
                             "pass splits")
        return w, src, np.full(n, rows // n, np.int64)
    raw = splits.detach().cpu().numpy() if is_torch(splits) else splits
    send_rows = np.asarray(raw, dtype=np.int64).reshape(-1)
    if send_rows.size != n or (send_rows < 0).any() or send_rows.sum() != rows:
        raise ValueError(f"{label}: splits {send_rows.tolist()} must have {n} non-negative "
                         f"entries summing to {rows}")
    return w, src, send_rows


def _agree(metas: list, problem: BaseException | None, label: str) -> None:
    """Raise on every rank if any rank failed (strings) or the row layouts differ."""
    from .errors import MismatchError

    failed = [r for r, m in enumerate(metas) if isinstance(m, str)]
    if problem is not None:
        raise problem
    if failed:
        listing = "; ".join(f"rank {r}: {metas[r]}" for r in failed)
        raise MismatchError(f"{label}: rejected locally by rank(s) {failed} ({listing})")
    layouts = [m for m in metas if m is not None]
    if any(m != layouts[0] for m in layouts):
        listing = ", ".join(f"rank {r}: {list(m[0])} {m[1]} from thread '{m[2]}'"
                            for r, m in enumerate(metas))
        raise MismatchError(f"{label}: mismatched trailing shapes, dtypes or calling threads "
                            f"({listing})")

