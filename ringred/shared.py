"""Shared buffers: NumPy arrays that live in the shared-memory segment of the ranks on a host.

With the shm transport an allreduce normally copies every rank's input into the segment,
chunk by chunk, and the result back out.  When every rank's input is an array from
:func:`empty` or :func:`zeros`, the ranks read each other's inputs where they are: no copy
in, and when every output is shared too (``out=x`` in place, or another shared array) no
copy out either.  That is 2x faster at 1-4 MiB on a 2-core host (docs/shm.md).

The arrays are ordinary, writable NumPy arrays; any of them works in any collective, and
one rank may use shared arrays while another does not (then the ranks just copy).  Without
the shm transport (ranks on several hosts, ``RINGRED_TRANSPORT=mpi``) they are ordinary
private arrays.  Memory is taken from ``/dev/shm`` when an array is created and given back
when it is garbage-collected; arrays stay valid after :func:`ringred.shutdown`.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from ._lib import (
    Status,
    make_error,
    rr_comm_zero_copy_calls,
    rr_engine_zero_copy_calls,
    shared_alloc,
)
from .process_sets import ProcessSet, context_of


def _shape(shape: Any) -> tuple[int, ...]:
    if isinstance(shape, (int, np.integer)):
        return (int(shape),)
    return tuple(int(d) for d in shape)


def empty(shape: Any, dtype: Any = np.float32,
          process_set: ProcessSet | None = None) -> np.ndarray:
    """A new uninitialized C-contiguous array in this rank's part of the shared segment.

    Like ``numpy.empty``.  Collectives of ``process_set`` (default: all ranks) read it in
    place.  Falls back to an ordinary array (with a ``ResourceWarning`` if it was for lack
    of room: ``RINGRED_SHM_ARENA_BYTES`` or ``/dev/shm`` full) when shared memory is not
    available; the array works the same either way, only the copies differ.
    """
    ctx = context_of(process_set)
    dt = np.dtype(dtype)
    shp = _shape(shape)
    if any(d < 0 for d in shp):
        raise ValueError(f"negative dimension in shape {shp}")
    nbytes = math.prod(shp) * dt.itemsize
    if nbytes == 0 or ctx.transport != "shm" or dt.hasobject:
        return np.empty(shp, dt)
    st, buf = shared_alloc(ctx.handle, nbytes)
    if st != Status.OK:
        err = make_error(st, ctx.handle, "shared buffer")
        if st not in (Status.ERR_UNSUPPORTED, Status.ERR_NOMEM):
            raise err
        if st == Status.ERR_NOMEM:
            warnings.warn(f"{err}; using ordinary memory", ResourceWarning, stacklevel=2)
        return np.empty(shp, dt)
    return np.frombuffer(buf, dtype=dt).reshape(shp)


def zeros(shape: Any, dtype: Any = np.float32,
          process_set: ProcessSet | None = None) -> np.ndarray:
    """Like :func:`empty`, filled with zeros."""
    a = empty(shape, dtype, process_set)
    a.fill(0)
    return a


def empty_like(x: Any, process_set: ProcessSet | None = None) -> np.ndarray:
    """A shared array with the shape and dtype of ``x``."""
    a = np.asarray(x)
    return empty(a.shape, a.dtype, process_set)


def zero_copy_calls(process_set: ProcessSet | None = None) -> int:
    """How many collectives of ``process_set`` so far read shared buffers in place, the
    background engine's (``allreduce_async`` & co.) included."""
    ctx = context_of(process_set)
    n = int(rr_comm_zero_copy_calls(ctx.handle))
    eng = ctx.engine
    if eng is not None and not eng.closed:
        n += int(rr_engine_zero_copy_calls(eng.h))
    return n


__all__ = ["empty", "zeros", "empty_like", "zero_copy_calls"]
