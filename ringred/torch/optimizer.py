"""Horovod's DistributedOptimizer and state-broadcast signatures over ringred's."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import ringred
from ringred.distributed.compression import Compression
from ringred.ops import ReduceOp
from ringred.process_sets import ProcessSet, global_process_set


def DistributedOptimizer(  # noqa: N802 - Horovod's spelling
    optimizer: Any,
    named_parameters: Iterable[tuple[str, Any]] | None = None,
    compression: Any = Compression.none,
    backward_passes_per_step: int = 1,
    op: Any = ReduceOp.Average,
    gradient_predivide_factor: float = 1.0,
    num_groups: int = 0,
    groups: Any = None,
    sparse_as_dense: bool = False,
    process_set: ProcessSet = global_process_set,
) -> Any:
    """Wrap a torch optimizer so gradients are averaged across ranks (Horovod's signature).

    ``num_groups``/``groups`` are accepted for compatibility (ringred's engine fuses ready
    gradients by itself).  Sparse gradients are allgathered, or with ``sparse_as_dense``
    allreduced as dense tensors, as in Horovod.
    With ``process_set``, gradients are averaged within that set; on a rank outside it the
    wrapper steps on the rank's own gradients, as in Horovod.
    """
    if op == "Adasum":
        raise NotImplementedError("Adasum is not implemented by ringred; use Average or Sum")
    return ringred.DistributedOptimizer(
        optimizer, named_parameters=named_parameters, compression=compression,
        backward_passes_per_step=backward_passes_per_step, op=ReduceOp(op),
        gradient_predivide_factor=gradient_predivide_factor, process_set=process_set,
        sparse_as_dense=sparse_as_dense, _horovod=True,
    )


def broadcast_parameters(params: Any, root_rank: int, prefix: str | None = None) -> None:
    """Broadcast a ``state_dict`` or ``named_parameters()`` from ``root_rank``, in place."""
    if prefix:
        items = params.items() if hasattr(params, "items") else params
        params = [(f"{prefix}{k}", v) for k, v in items]
    ringred.broadcast_parameters(params, root_rank=root_rank)


def broadcast_optimizer_state(optimizer: Any, root_rank: int, prefix: str | None = None,
                              model: Any = None) -> None:
    """Broadcast an optimizer's state from ``root_rank`` (Horovod's signature).

    As in Horovod, when the optimizer has no state yet every parameter that requires a
    gradient and has none gets a zero gradient (sparse for ``SparseAdam``); unlike Horovod,
    no optimizer step is taken to create the state (Horovod's dummy step moves parameters
    under weight decay): the root's state is broadcast as it is."""
    inner = getattr(optimizer, "optimizer", optimizer)
    if not inner.state:
        import torch

        sparse = isinstance(inner, torch.optim.SparseAdam)
        for group in inner.param_groups:
            for p in group["params"]:
                if p.requires_grad and p.grad is None:
                    z = torch.zeros_like(p)
                    p.grad = z.to_sparse() if sparse else z
    ringred.broadcast_optimizer_state(optimizer, root_rank=root_rank)
