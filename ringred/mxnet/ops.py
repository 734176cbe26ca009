"""Collectives on MXNet NDArrays (CPU): NumPy views in, NDArrays over the results out."""

from __future__ import annotations

from typing import Any

from .. import collectives as _c
from .._fused import aligned_empty, prepare
from ..ops import ReduceOp
from ..process_sets import ProcessSet
from ._convert import host_view, to_ndarray


def allreduce(tensor: Any, op: ReduceOp = ReduceOp.Average, name: str | None = None,
              prescale_factor: float = 1.0, postscale_factor: float = 1.0,
              process_set: ProcessSet | None = None) -> Any:
    """Reduce ``tensor`` across ranks (Average by default) into a new NDArray."""
    src = prepare(lambda: host_view(tensor, what="allreduce"), process_set)
    res = _c.allreduce(src, op=op, name=name, prescale_factor=prescale_factor,
                       postscale_factor=postscale_factor,
                       out=aligned_empty(src.shape, src.dtype), process_set=process_set)
    return to_ndarray(res, tensor)


def allreduce_(tensor: Any, op: ReduceOp = ReduceOp.Average, name: str | None = None,
               prescale_factor: float = 1.0, postscale_factor: float = 1.0,
               process_set: ProcessSet | None = None) -> Any:
    """Reduce ``tensor`` across ranks in place and return it."""
    view = prepare(lambda: host_view(tensor, writable=True, what="allreduce"), process_set)
    _c.allreduce(view, op=op, name=name, prescale_factor=prescale_factor,
                 postscale_factor=postscale_factor, out=view, process_set=process_set)
    return tensor


def broadcast(tensor: Any, root_rank: int = 0, name: str | None = None,
              process_set: ProcessSet | None = None) -> Any:
    """``root_rank``'s ``tensor`` on every rank, as a new NDArray."""
    src = prepare(lambda: host_view(tensor, what="broadcast"), process_set)
    buf = aligned_empty(src.shape, src.dtype)
    buf[...] = src
    _c.broadcast(buf, root_rank, name=name, out=buf, process_set=process_set)
    return to_ndarray(buf, tensor)


def broadcast_(tensor: Any, root_rank: int = 0, name: str | None = None,
               process_set: ProcessSet | None = None) -> Any:
    """Overwrite ``tensor`` with ``root_rank``'s, in place, and return it."""
    view = prepare(lambda: host_view(tensor, writable=True, what="broadcast"), process_set)
    _c.broadcast(view, root_rank, name=name, out=view, process_set=process_set)
    return tensor


def allgather(tensor: Any, name: str | None = None,
              process_set: ProcessSet | None = None) -> Any:
    """Every rank's ``tensor`` concatenated along the first dimension (which may differ)."""
    src = prepare(lambda: host_view(tensor, what="allgather"), process_set)
    return to_ndarray(_c.allgather(src, name=name, process_set=process_set), tensor)
