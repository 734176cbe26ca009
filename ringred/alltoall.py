"""Alltoall with optional per-destination splits of the first dimension."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._arrays import as_array, contiguous, is_torch
from .process_sets import ProcessSet, context_of


def _dup(ctx: Any) -> Any:
    comm = getattr(ctx, "_alltoall_comm", None)
    if comm is None:
        comm = ctx.mpi_comm.Dup()
        ctx._alltoall_comm = comm
        ctx.on_close(comm.Free)
    return comm


def alltoall(x: Any, splits: Any = None, name: str | None = None,
             process_set: ProcessSet | None = None) -> tuple[Any, np.ndarray]:
    """Send ``splits[i]`` rows of ``x`` (in order) to rank i; return what every rank sent
    here, concatenated in rank order, and the received row counts.

    ``splits`` defaults to an even split (the first dimension must then divide evenly).
    """
    ctx = context_of(process_set)
    w = as_array(x)
    src = contiguous(w.arr)
    if src.ndim == 0:
        raise ValueError("alltoall: 0-d arrays are not supported; reshape to (1,)")
    n = ctx.size
    rows = src.shape[0]
    if splits is None:
        if rows % n:
            raise ValueError(f"alltoall: first dimension {rows} is not divisible by {n} ranks; "
                             "pass splits")
        send_rows = np.full(n, rows // n, np.int64)
    else:
        raw = splits.detach().cpu().numpy() if is_torch(splits) else splits
        send_rows = np.asarray(raw, dtype=np.int64).reshape(-1)
        if send_rows.size != n or (send_rows < 0).any() or send_rows.sum() != rows:
            raise ValueError(f"alltoall '{name or ''}': splits {send_rows.tolist()} must have "
                             f"{n} non-negative entries summing to {rows}")
    comm = _dup(ctx)
    # Agree on the row layout (trailing shape and dtype) before moving data.
    meta = (src.shape[1:], str(src.dtype))
    metas = comm.allgather(meta)
    if any(m != meta for m in metas):
        from .errors import MismatchError

        listing = ", ".join(f"rank {r}: {list(m[0])} {m[1]}" for r, m in enumerate(metas))
        raise MismatchError(f"alltoall '{name or ''}': mismatched trailing shapes or dtypes "
                            f"({listing})")
    recv_rows = np.empty(n, np.int64)
    comm.Alltoall(send_rows, recv_rows)
    row_bytes = int(np.prod(src.shape[1:], dtype=np.int64)) * src.itemsize
    out = np.empty((int(recv_rows.sum()),) + src.shape[1:], src.dtype)
    sb = src.reshape(-1).view(np.uint8)
    rb = out.reshape(-1).view(np.uint8)
    scounts = send_rows * row_bytes
    rcounts = recv_rows * row_bytes
    sdispl = np.concatenate(([0], np.cumsum(scounts)[:-1]))
    rdispl = np.concatenate(([0], np.cumsum(rcounts)[:-1]))
    from mpi4py import MPI

    comm.Alltoallv([sb, (scounts, sdispl), MPI.BYTE], [rb, (rcounts, rdispl), MPI.BYTE])
    return w.back(out), recv_rows
