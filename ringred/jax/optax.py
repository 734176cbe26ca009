"""``distributed(tx)``: an optax ``GradientTransformation`` that averages across ranks.

    import optax, ringred, ringred.jax
    from ringred.jax.optax import distributed

    tx = distributed(optax.adam(1e-3))          # gradients averaged before adam
    state = tx.init(params)
    updates, state = tx.update(grads, state, params)
    params = optax.apply_updates(params, updates)

``tx.update`` works eagerly and inside ``jax.jit`` (there the averaging is an ordered
``io_callback``).  Needs ``optax``.
"""

from __future__ import annotations

import operator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

try:
    import optax
except ImportError as exc:  # pragma: no cover - exercised only without optax
    raise ImportError("ringred.jax.optax needs optax: pip install optax") from exc

from ..ops import ReduceOp
from ..process_sets import ProcessSet
from . import allreduce_tree
from ._convert import is_traced

__all__ = ["distributed", "DistributedState"]


class DistributedState(NamedTuple):
    """State of ``distributed(tx)``: the wrapped transformation's state and the number of
    updates made so far."""

    inner: Any
    count: jax.Array


def distributed(tx: optax.GradientTransformation, average_every: int | None = None,
                op: ReduceOp = ReduceOp.Average, name: str = "grad",
                process_set: ProcessSet | None = None) -> optax.GradientTransformation:
    """Wrap ``tx`` so that its updates use gradients averaged across ranks.

    Args:
        tx: any optax ``GradientTransformation`` (``optax.sgd``, ``optax.adam``, a chain).
        average_every: periodic parameter averaging instead of gradient averaging: each
            rank updates on its own gradients, and every ``average_every``-th update also
            moves the parameters to their average across ranks.  ``tx.update`` then needs
            ``params``.  The returned update is ``mean(p + u) - p``: ``apply_updates``
            lands exactly on the average where a rank's parameter is within a factor of two
            of it (Sterbenz), and within one rounding otherwise, so the ranks' parameters
            can then differ in the last bit; ``ringred.jax.broadcast_tree(params)`` makes
            them bit-identical (before saving or evaluating).
        op: ``ringred.Average`` (default) or ``ringred.Sum`` for the gradients.
        name: prefix of the collective's name (error messages).
        process_set: average within this ``ringred.ProcessSet`` only (default: all ranks).

    Returns:
        An ``optax.GradientTransformation`` whose state is a ``DistributedState``.
    """
    op = ReduceOp(op)
    if op not in (ReduceOp.Average, ReduceOp.Sum):
        raise ValueError(f"op must be ringred.Average or ringred.Sum for gradients, not {op.name}")
    if average_every is not None:
        average_every = operator.index(average_every)
        if average_every < 1:
            raise ValueError(f"average_every must be >= 1, got {average_every}")
    if process_set is not None and not isinstance(process_set, ProcessSet):
        raise TypeError(f"process_set must be a ringred.ProcessSet, not {process_set!r}")

    def init_fn(params: Any) -> DistributedState:
        return DistributedState(tx.init(params), jnp.zeros([], jnp.int32))

    def update_fn(updates: Any, state: DistributedState,
                  params: Any = None) -> tuple[Any, DistributedState]:
        count = state.count + 1
        if average_every is None:
            grads = allreduce_tree(updates, op=op, name=name, process_set=process_set)
            new_updates, inner = tx.update(grads, state.inner, params)
            return new_updates, DistributedState(inner, count)
        if params is None:
            raise ValueError("distributed(tx, average_every=k).update needs params: "
                             "tx.update(grads, state, params)")
        new_updates, inner = tx.update(updates, state.inner, params)

        def to_average(u: Any) -> Any:
            moved = optax.apply_updates(params, u)
            avg = allreduce_tree(moved, op=ReduceOp.Average, name=f"{name}.average",
                                 process_set=process_set)
            return jax.tree.map(lambda a, p, d: (a - p).astype(d.dtype), avg, params, u)

        if is_traced(count):
            new_updates = jax.lax.cond(count % average_every == 0, to_average, lambda u: u,
                                       new_updates)
        elif int(count) % average_every == 0:
            new_updates = to_average(new_updates)
        return new_updates, DistributedState(inner, count)

    return optax.GradientTransformation(init_fn, update_fn)
