"""ringred for JAX: collectives on ``jax.Array``s, pytree helpers, an optax wrapper.

Every function works on CPU ``jax.Array``s and returns ``jax.Array``s.  Called on concrete
arrays it runs at once (inputs are read in place through ``np.asarray``; results are
64-byte aligned host buffers that JAX adopts without a copy).  Called inside ``jax.jit``
(on traced values) it becomes an ordered ``jax.experimental.io_callback``, so the same
call works in both places; see docs/jax.md for what each form costs::

    import ringred, ringred.jax as rj
    ringred.init()
    params = rj.broadcast_tree(params, root_rank=0)    # every rank starts from rank 0's
    grads = rj.allreduce_tree(grads)                   # average a pytree, one fused call
    tx = ringred.jax.optax.distributed(optax.adam(1e-3))   # or wrap the optimizer

Needs ``jax`` (and ``optax`` for ``ringred.jax.optax``); ringred itself does not.
"""

from __future__ import annotations

try:
    import jax
except ImportError as exc:  # pragma: no cover - exercised only without jax
    raise ImportError("ringred.jax needs JAX: pip install jax (CPU) first") from exc

from typing import Any

from .._fused import prepare
from ..ops import Average, ReduceOp, Sum
from ..process_sets import ProcessSet
from . import _host
from ._convert import is_traced, to_jax, to_jax_list
from ._jit import (
    jit_allgather,
    jit_allreduce,
    jit_allreduce_leaves,
    jit_broadcast,
    jit_broadcast_leaves,
    jit_reducescatter,
)

__all__ = ["allreduce", "broadcast", "allgather", "reducescatter", "allreduce_tree",
           "broadcast_tree", "Average", "Sum"]


def allreduce(x: Any, op: ReduceOp = Average, name: str | None = None,
              prescale_factor: float = 1.0, postscale_factor: float = 1.0,
              process_set: ProcessSet | None = None) -> jax.Array:
    """Reduce ``x`` across ranks (Average by default) and return a new ``jax.Array``.

    ``op``, the scale factors and ``process_set`` are as for ``ringred.allreduce``.  Inside
    ``jax.jit`` this is an ordered ``io_callback`` (every rank must trace the same calls in
    the same order, as for any collective)."""
    if is_traced(x):
        return jit_allreduce(x, op, name, prescale_factor, postscale_factor, process_set)
    what = f"allreduce '{name}'" if name else "allreduce"
    a = prepare(lambda: _host.host_array(x, what), process_set)
    return to_jax(_host.allreduce(a, op, name, prescale_factor, postscale_factor, process_set),
                  like=x)


def broadcast(x: Any, root_rank: int = 0, name: str | None = None,
              process_set: ProcessSet | None = None) -> jax.Array:
    """Return ``root_rank``'s ``x`` on every rank (a new ``jax.Array``)."""
    if is_traced(x):
        return jit_broadcast(x, root_rank, name, process_set)
    a = prepare(lambda: _host.host_array(x, f"broadcast '{name}'" if name else "broadcast"),
                process_set)
    return to_jax(_host.broadcast(a, root_rank, name, process_set), like=x)


def allgather(x: Any, name: str | None = None,
              process_set: ProcessSet | None = None) -> jax.Array:
    """Concatenate every rank's ``x`` along the first dimension.

    Outside jit the first dimension may differ by rank; inside jit the result's shape must
    be known when tracing, so every rank must pass the same shape (ValueError otherwise)."""
    if is_traced(x):
        return jit_allgather(x, name, process_set)
    a = prepare(lambda: _host.host_array(x, f"allgather '{name}'" if name else "allgather"),
                process_set)
    return to_jax(_host.allgather(a, name, process_set), like=x)


def reducescatter(x: Any, op: ReduceOp = Average, name: str | None = None,
                  process_set: ProcessSet | None = None) -> jax.Array:
    """Reduce ``x`` across ranks and return this rank's rows (split as evenly as possible,
    lower ranks taking one extra row each)."""
    if is_traced(x):
        return jit_reducescatter(x, op, name, process_set)
    a = prepare(lambda: _host.host_array(x, f"reducescatter '{name}'" if name else "reducescatter"),
                process_set)
    return to_jax(_host.reducescatter(a, op, name, process_set), like=x)


def allreduce_tree(tree: Any, op: ReduceOp = Average, name: str = "tree",
                   prescale_factor: float = 1.0, postscale_factor: float = 1.0,
                   process_set: ProcessSet | None = None) -> Any:
    """Reduce every leaf of a pytree (e.g. a gradient tree) across ranks in one fused call
    per dtype; return a pytree of the same structure holding new ``jax.Array``s.

    The first call with a given structure checks that every rank passes the same one
    (MismatchError on every rank otherwise, showing each rank's structure)."""
    leaves, treedef = jax.tree.flatten(tree)
    if not leaves:
        return tree
    if any(is_traced(v) for v in leaves):
        out = jit_allreduce_leaves(leaves, str(treedef), op, name, prescale_factor,
                                   postscale_factor, process_set)
        return jax.tree.unflatten(treedef, out)
    host = prepare(lambda: [_host.host_array(v, f"allreduce '{name}'") for v in leaves],
                   process_set)
    res = _host.allreduce_leaves(host, op, name, prescale_factor, postscale_factor, process_set,
                                 str(treedef))
    return jax.tree.unflatten(treedef, to_jax_list(res, leaves))


def broadcast_tree(tree: Any, root_rank: int = 0, name: str = "params",
                   process_set: ProcessSet | None = None) -> Any:
    """Return ``root_rank``'s pytree (e.g. model parameters) on every rank, in one fused
    broadcast per dtype.  The structure must be the same on every rank (checked the first
    time a structure is used: MismatchError)."""
    leaves, treedef = jax.tree.flatten(tree)
    if not leaves:
        return tree
    if any(is_traced(v) for v in leaves):
        out = jit_broadcast_leaves(leaves, str(treedef), root_rank, name, process_set)
        return jax.tree.unflatten(treedef, out)
    host = prepare(lambda: [_host.host_array(v, f"broadcast '{name}'") for v in leaves],
                   process_set)
    res = _host.broadcast_leaves(host, root_rank, name, process_set, str(treedef))
    return jax.tree.unflatten(treedef, to_jax_list(res, leaves))


def __getattr__(name: str) -> Any:
    # ringred.jax.optax without importing optax for users who do not need it
    if name == "optax":
        import importlib

        return importlib.import_module(f"{__name__}.optax")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
