"""The forms of the collectives used inside ``jax.jit``: ordered ``io_callback``s that run
the same host functions as the eager calls.

``ordered=True`` makes XLA run the callbacks of one program in program order, so every rank
issues its collectives in the order it traced them.  A ringred error inside the callback
reaches the caller as JAX's runtime error carrying ringred's message."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.experimental import io_callback

from ..ops import ReduceOp
from ..process_sets import ProcessSet
from . import _host


def _spec(x: Any, shape: tuple | None = None) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(x.shape if shape is None else shape, x.dtype)


def jit_allreduce(x: Any, op: ReduceOp, name: str | None, pre: float, post: float,
                  process_set: ProcessSet | None) -> Any:
    def host(a: Any) -> np.ndarray:
        return _host.allreduce(np.asarray(a), op, name, pre, post, process_set)

    return io_callback(host, _spec(x), x, ordered=True)


def jit_broadcast(x: Any, root_rank: int, name: str | None,
                  process_set: ProcessSet | None) -> Any:
    def host(a: Any) -> np.ndarray:
        return _host.broadcast(np.asarray(a), root_rank, name, process_set)

    return io_callback(host, _spec(x), x, ordered=True)


def jit_allgather(x: Any, name: str | None, process_set: ProcessSet | None) -> Any:
    if x.ndim == 0:
        raise ValueError("allgather: 0-d arrays cannot be gathered; reshape to (1,)")
    rows = _host.gather_rows(x.shape[0], process_set)

    def host(a: Any) -> np.ndarray:
        return _host.allgather(np.asarray(a), name, process_set, expect_rows=rows)

    return io_callback(host, _spec(x, (rows,) + tuple(x.shape[1:])), x, ordered=True)


def jit_reducescatter(x: Any, op: ReduceOp, name: str | None,
                      process_set: ProcessSet | None) -> Any:
    if x.ndim == 0:
        raise ValueError("reducescatter: 0-d arrays cannot be scattered; reshape to (1,)")
    rows = _host.scatter_rows(x.shape[0], process_set)

    def host(a: Any) -> np.ndarray:
        return _host.reducescatter(np.asarray(a), op, name, process_set)

    return io_callback(host, _spec(x, (rows,) + tuple(x.shape[1:])), x, ordered=True)


def jit_allreduce_leaves(leaves: Sequence[Any], structure: str, op: ReduceOp, name: str,
                         pre: float, post: float, process_set: ProcessSet | None) -> list:
    def host(vals: Sequence[Any]) -> list[np.ndarray]:
        return _host.allreduce_leaves([np.asarray(v) for v in vals], op, name, pre, post,
                                      process_set, structure)

    return io_callback(host, [_spec(v) for v in leaves], list(leaves), ordered=True)


def jit_broadcast_leaves(leaves: Sequence[Any], structure: str, root_rank: int, name: str,
                         process_set: ProcessSet | None) -> list:
    def host(vals: Sequence[Any]) -> list[np.ndarray]:
        return _host.broadcast_leaves([np.asarray(v) for v in vals], root_rank, name,
                                      process_set, structure)

    return io_callback(host, [_spec(v) for v in leaves], list(leaves), ordered=True)
