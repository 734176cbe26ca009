"""The host side of every ringred.jax collective: NumPy in, aligned NumPy out.

These functions run either directly (eager calls) or inside ``io_callback`` (calls traced
by ``jax.jit``); both forms share them so that they behave the same."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import collectives as _c
from .._fused import aligned_empty, fused_allreduce, fused_broadcast
from ..errors import UnsupportedError
from ..ops import ReduceOp
from ..process_sets import ProcessSet, context_of


def host_array(x: Any, what: str) -> np.ndarray:
    """``x`` (a CPU ``jax.Array``, NumPy array or scalar) as a NumPy array, without a copy
    where possible; UnsupportedError for arrays in accelerator memory."""
    devices = getattr(x, "devices", None)
    if callable(devices) and not all(d.platform == "cpu" for d in devices()):
        raise UnsupportedError(
            f"{what}: ringred.jax takes jax.Arrays in host memory (the CPU backend); this one "
            f"is on {sorted(str(d) for d in devices())}"
        )
    return np.asarray(x)


def allreduce(x: np.ndarray, op: ReduceOp, name: str | None, pre: float, post: float,
              process_set: ProcessSet | None) -> np.ndarray:
    out = aligned_empty(x.shape, x.dtype)
    return _c.allreduce(np.ascontiguousarray(x), op=op, name=name, prescale_factor=pre,
                        postscale_factor=post, out=out, process_set=process_set)


def broadcast(x: np.ndarray, root_rank: int, name: str | None,
              process_set: ProcessSet | None) -> np.ndarray:
    return fused_broadcast([x], root_rank, name or "broadcast", process_set)[0]


def allgather(x: np.ndarray, name: str | None, process_set: ProcessSet | None,
              expect_rows: int | None = None) -> np.ndarray:
    res = _c.allgather(np.ascontiguousarray(x), name=name, process_set=process_set)
    if expect_rows is not None and res.shape[0] != expect_rows:
        what = f"allgather '{name}'" if name else "allgather"
        raise ValueError(
            f"{what} inside jax.jit: the result has {res.shape[0]} rows, the traced shape "
            f"promised {expect_rows}; inside jit every rank must pass the same first "
            "dimension (call it outside jit for ragged gathers)"
        )
    return res


def reducescatter(x: np.ndarray, op: ReduceOp, name: str | None,
                  process_set: ProcessSet | None) -> np.ndarray:
    return _c.reducescatter(np.ascontiguousarray(x), op=op, name=name, process_set=process_set)


def allreduce_leaves(leaves: Sequence[np.ndarray], op: ReduceOp, name: str, pre: float,
                     post: float, process_set: ProcessSet | None,
                     structure: str) -> list[np.ndarray]:
    return fused_allreduce(leaves, op, name, pre, post, process_set, structure)


def broadcast_leaves(leaves: Sequence[np.ndarray], root_rank: int, name: str,
                     process_set: ProcessSet | None, structure: str) -> list[np.ndarray]:
    return fused_broadcast(leaves, root_rank, name, process_set, structure)


def gather_rows(rows: int, process_set: ProcessSet | None) -> int:
    """Rows of an allgather result when every rank passes ``rows`` (for traced shapes)."""
    return rows * context_of(process_set).size


def scatter_rows(rows: int, process_set: ProcessSet | None) -> int:
    """Rows this rank receives from reducescatter of ``rows`` rows."""
    ctx = context_of(process_set)
    return _c.split_rows(rows, ctx.size)[ctx.rank]
