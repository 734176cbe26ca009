"""Collectives on picklable Python objects."""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np

from .collectives import allgather, broadcast
from .process_sets import ProcessSet, context_of


def broadcast_object(obj: Any, root_rank: int = 0,
                     process_set: ProcessSet | None = None) -> Any:
    """Return ``root_rank``'s ``obj`` (pickled) on every rank."""
    ctx = context_of(process_set)
    ps = process_set
    payload = pickle.dumps(obj) if ctx.rank == root_rank else b""
    n = broadcast(np.array([len(payload)], dtype=np.int64), root_rank, process_set=ps)
    buf = np.frombuffer(payload, np.uint8).copy() if ctx.rank == root_rank else np.empty(
        int(n[0]), np.uint8
    )
    buf = broadcast(buf, root_rank, out=buf, process_set=ps)
    return obj if ctx.rank == root_rank else pickle.loads(buf.tobytes())


def allgather_object(obj: Any, process_set: ProcessSet | None = None) -> list[Any]:
    """Return the list of every rank's ``obj``, in rank order."""
    ctx = context_of(process_set)
    data = np.frombuffer(pickle.dumps(obj), np.uint8)
    sizes = allgather(np.array([data.size], dtype=np.int64), process_set=process_set)
    flat = allgather(data, process_set=process_set)
    out, o = [], 0
    for r in range(ctx.size):
        n = int(sizes[r])
        out.append(pickle.loads(flat[o : o + n].tobytes()))
        o += n
    return out

