"""Collectives on picklable Python objects."""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np

from ._args import root_of
from .collectives import allgather, broadcast
from .errors import RingredError
from .process_sets import ProcessSet, context_of


def broadcast_object(obj: Any, root_rank: int = 0,
                     process_set: ProcessSet | None = None) -> Any:
    """Return ``root_rank``'s ``obj`` (pickled) on every rank.

    If the root cannot pickle ``obj``, the root raises that error and the other ranks a
    ``RingredError`` saying so (nobody waits for the payload)."""
    ctx = context_of(process_set)
    with ctx.serial:  # both steps, without another thread's call in between
        return _broadcast_object(ctx, obj, root_rank, process_set)


def _broadcast_object(ctx: Any, obj: Any, root_rank: int, ps: ProcessSet | None) -> Any:
    payload, problem = b"", None
    is_root = ctx.rank == root_of(root_rank, ctx, "broadcast_object")
    if is_root:
        payload, problem = _pickle(obj)
    size = -1 if problem is not None else len(payload)
    n = int(broadcast(np.array([size], dtype=np.int64), root_rank, process_set=ps)[0])
    if problem is not None:
        raise problem
    if n < 0:
        raise RingredError(f"broadcast_object: rank {root_rank} (the root) could not pickle "
                           "its object")
    buf = np.frombuffer(payload, np.uint8).copy() if is_root else np.empty(
        n, np.uint8
    )
    buf = broadcast(buf, root_rank, out=buf, process_set=ps)
    return obj if is_root else pickle.loads(buf.tobytes())


def allgather_object(obj: Any, process_set: ProcessSet | None = None) -> list[Any]:
    """Return the list of every rank's ``obj``, in rank order.

    If a rank cannot pickle its ``obj``, it raises that error and the others a
    ``RingredError`` naming it (nobody waits for its payload)."""
    ctx = context_of(process_set)
    with ctx.serial:  # both steps, without another thread's call in between
        return _allgather_object(ctx, obj, process_set)


def _allgather_object(ctx: Any, obj: Any, process_set: ProcessSet | None) -> list[Any]:
    payload, problem = _pickle(obj)
    size = -1 if problem is not None else len(payload)
    sizes = allgather(np.array([size], dtype=np.int64), process_set=process_set)
    if problem is not None:
        raise problem
    failed = [r for r in range(ctx.size) if sizes[r] < 0]
    if failed:
        raise RingredError(f"allgather_object: rank(s) {failed} could not pickle their object")
    flat = allgather(np.frombuffer(payload, np.uint8), process_set=process_set)
    out, o = [], 0
    for r in range(ctx.size):
        n = int(sizes[r])
        out.append(pickle.loads(flat[o : o + n].tobytes()))
        o += n
    return out


def _pickle(obj: Any) -> tuple[bytes, BaseException | None]:
    """``obj`` pickled, or the error that pickling it raised."""
    try:
        return pickle.dumps(obj), None
    except Exception as e:  # pickling can raise almost anything (TypeError, PicklingError...)
        return b"", e
