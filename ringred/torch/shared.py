"""Torch tensors in the shared-memory segment (ringred.zeros underneath).

An allreduce whose input is such a tensor on every rank reads it where it is instead of
copying it through the transport (docs/shm.md, "Shared buffers").  The use that matters is
gradients: autograd adds each backward pass into an existing ``p.grad`` in place, so after
:func:`share_gradients` the DistributedOptimizer's allreduces read the gradients in place,
step after step, as long as they are zeroed rather than dropped
(``opt.zero_grad(set_to_none=False)``).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

import ringred

# torch dtype -> NumPy dtype of the same size (bfloat16: viewed back after from_numpy)
_NUMPY = {
    torch.float32: np.float32, torch.float64: np.float64, torch.float16: np.float16,
    torch.bfloat16: np.int16, torch.int64: np.int64, torch.int32: np.int32,
    torch.int16: np.int16, torch.int8: np.int8, torch.uint8: np.uint8,
}


def shared_zeros_like(t: torch.Tensor) -> torch.Tensor:
    """A zero CPU tensor with ``t``'s shape and dtype in this rank's shared arena (an
    ordinary tensor where shared memory is not available)."""
    if t.dtype not in _NUMPY:
        raise TypeError(f"shared tensors of dtype {t.dtype} are not supported")
    out = torch.from_numpy(ringred.zeros(tuple(t.shape), _NUMPY[t.dtype]))
    return out.view(torch.bfloat16) if t.dtype == torch.bfloat16 else out


def share_gradients(params: Iterable[torch.Tensor]) -> int:
    """Give every dense CPU parameter in ``params`` that requires a gradient a ``.grad`` in
    shared memory (zeros, or a copy of the gradient it has).  Returns how many got one.

    Keep them with ``opt.zero_grad(set_to_none=False)``: zeroing with ``set_to_none=True``
    (torch's default) drops them, and the next backward pass allocates ordinary gradients
    again (still correct, just copied).  Note that optimizers then see a zero gradient, not
    None, for parameters that got no gradient in a step.
    """
    shared = 0
    for p in params:
        if (not p.requires_grad or p.device.type != "cpu" or p.layout != torch.strided
                or p.dtype not in _NUMPY):
            continue
        g = shared_zeros_like(p)
        if p.grad is not None:
            g.copy_(p.grad)
        p.grad = g
        shared += 1
    return shared


__all__ = ["shared_zeros_like", "share_gradients"]
