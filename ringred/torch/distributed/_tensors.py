"""Torch tensors as the NumPy arrays ringred's engine takes, and back."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from ringred._arrays import BFLOAT16
from ringred.ops import ReduceOp

# torch's reduce ops that ringred's engine carries out, by name.
_OPS = {"SUM": ReduceOp.Sum, "AVG": ReduceOp.Average, "MIN": ReduceOp.Min,
        "MAX": ReduceOp.Max, "PRODUCT": ReduceOp.Product}
_REDUCIBLE = {torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.float16,
              torch.bfloat16, torch.float32, torch.float64, torch.complex64, torch.complex128}


def reduce_op(op: Any, what: str) -> ReduceOp:
    """ringred's op for torch's ``op`` (a ``dist.ReduceOp``), or NotImplementedError."""
    for name, rop in _OPS.items():
        if op == getattr(dist.ReduceOp, name):
            return rop
    label = str(getattr(op, "op", op)).rsplit(".", 1)[-1].split(":")[0]
    raise NotImplementedError(
        f"ringred process group: {what} with reduce op {label} is not supported "
        "(SUM, AVG, MIN, MAX and PRODUCT are)")


def check_cpu(t: torch.Tensor, what: str) -> None:
    """CPU tensors only (CUDA tensors do not go through this process group yet)."""
    if t.device.type != "cpu":
        raise NotImplementedError(
            f"ringred process group: {what} on a {t.device.type} tensor is not supported; "
            "register it for cpu only (CUDA tensors do not go through the engine here yet)")


def reducible(t: torch.Tensor, op: ReduceOp, what: str) -> torch.Tensor:
    """A contiguous tensor of a dtype the engine reduces (complex as pairs of reals)."""
    check_cpu(t, what)
    if t.dtype not in _REDUCIBLE:
        raise NotImplementedError(
            f"ringred process group: {what} of {t.dtype} tensors is not supported")
    if t.is_complex():
        if op not in (ReduceOp.Sum, ReduceOp.Average):
            raise NotImplementedError(
                f"ringred process group: {what} of complex tensors supports SUM and AVG only")
        return torch.view_as_real(t.contiguous())
    return t.contiguous()


def array(t: torch.Tensor) -> np.ndarray:
    """A NumPy view of a contiguous CPU tensor (bfloat16 through ml_dtypes)."""
    t = t.detach()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(BFLOAT16)
    return t.numpy()


def as_bytes(t: torch.Tensor) -> torch.Tensor:
    """The bytes of a contiguous tensor, as a 1-D uint8 tensor sharing its memory."""
    flat = t.detach().reshape(-1)
    if flat.dtype == torch.uint8:
        return flat
    if flat.dtype == torch.bool:
        return flat.view(torch.uint8)
    if flat.numel() == 0:
        return torch.empty(0, dtype=torch.uint8)
    return flat.view(torch.uint8)


def byte_array(t: torch.Tensor) -> np.ndarray:
    """The bytes of a contiguous tensor as a NumPy uint8 array sharing its memory."""
    return as_bytes(t).numpy()
