"""Data-parallel training: ``DistributedOptimizer``, gradient compression, state broadcast.

``DistributedOptimizer`` wraps a ``ringred.optim`` optimizer (NumPy/CuPy) or a
``torch.optim`` optimizer by composition; see ``docs/distributed-optimizer.md``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

from ..ops import ReduceOp
from ..optim.base import Optimizer as RingredOptimizer
from ..process_sets import ProcessSet
from ._common import Settings
from .compression import (
    BF16Compressor,
    Compression,
    Compressor,
    FP16Compressor,
    NoneCompressor,
)
from .numpy_opt import NumpyDistributedOptimizer
from .state import broadcast_optimizer_state, broadcast_parameters, broadcast_state_tree

__all__ = [
    "DistributedOptimizer", "Compression", "Compressor", "NoneCompressor", "FP16Compressor",
    "BF16Compressor", "broadcast_parameters", "broadcast_optimizer_state",
    "broadcast_state_tree",
]


def DistributedOptimizer(  # noqa: N802 - Horovod's spelling
    optimizer: Any,
    named_parameters: Iterable[tuple[str, Any]] | None = None,
    compression: type[Compressor] | Compressor = Compression.none,
    backward_passes_per_step: int = 1,
    op: ReduceOp = ReduceOp.Average,
    gradient_predivide_factor: float = 1.0,
    average_every: int | None = None,
    process_set: ProcessSet | None = None,
    sparse_as_dense: bool = False,
    _horovod: bool = False,
) -> Any:
    """Wrap ``optimizer`` so that its updates use gradients averaged across all ranks (or
    the ranks of ``process_set``).

    Args:
        optimizer: a ``ringred.optim`` optimizer (its ``step(grads)`` then averages
            ``grads`` first) or a ``torch.optim.Optimizer`` (gradient hooks start each
            allreduce during ``backward``; ``step()`` waits for them, then steps).
        named_parameters: torch only: ``(name, parameter)`` pairs, e.g.
            ``model.named_parameters()``, naming the allreduces (names must be the same on
            every rank).  Default: ``"param.<group>.<index>"`` from the param groups.
        compression: ``Compression.none``, ``.fp16`` or ``.bf16``: the dtype of gradients
            on the wire.
        backward_passes_per_step: allreduce (and step) only every k-th backward pass; the
            k passes' gradients are summed locally first.
        op: ``ringred.Average`` (default) or ``ringred.Sum``.
        gradient_predivide_factor: with Average, multiply gradients by ``1/f`` before the
            sum and by ``f/size`` after it (guards float16 sums against overflow).
        average_every: periodic parameter averaging instead of gradient averaging: each
            rank steps on its own gradients and the parameters are averaged across ranks
            after every ``average_every``-th step.
        process_set: average within this registered ``ringred.ProcessSet`` only (several
            independent data-parallel groups in one job); only its members may wrap an
            optimizer with it (ValueError otherwise).  Default: all ranks.
        sparse_as_dense: torch only: sparse gradients (``nn.Embedding(sparse=True)``) are
            made dense and allreduced, then made sparse again; by default they are
            allgathered (indices and values of every rank), as in Horovod.

    Returns:
        The wrapper: ``NumpyDistributedOptimizer`` or ``TorchDistributedOptimizer``.
    """
    if isinstance(optimizer, NumpyDistributedOptimizer) or hasattr(optimizer, "skip_synchronize"):
        raise TypeError("optimizer is already a DistributedOptimizer")
    cfg = Settings(compression, backward_passes_per_step, op, gradient_predivide_factor,
                   average_every, process_set, sparse_as_dense, _horovod)
    if isinstance(optimizer, RingredOptimizer):
        if named_parameters is not None:
            raise TypeError("named_parameters is for torch optimizers: ringred.optim "
                            "optimizers already name their parameters")
        return NumpyDistributedOptimizer(optimizer, cfg)
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(optimizer, torch.optim.Optimizer):
        from .torch_opt import TorchDistributedOptimizer

        return TorchDistributedOptimizer(optimizer, cfg, named_parameters)
    raise TypeError(
        "DistributedOptimizer wraps a ringred.optim or torch.optim optimizer, not "
        f"{type(optimizer).__name__}"
    )
