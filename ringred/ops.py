"""Reduction operations."""

from __future__ import annotations

import enum


class ReduceOp(enum.IntEnum):
    """Reduction op of allreduce / reducescatter.  Average is Sum followed by 1/size."""

    Average = -1
    Sum = 0
    Min = 1
    Max = 2
    Product = 3


Average = ReduceOp.Average
Sum = ReduceOp.Sum
Min = ReduceOp.Min
Max = ReduceOp.Max
Product = ReduceOp.Product


def c_op(op: ReduceOp | int) -> int:
    """The C op code for ``op`` (Average is carried out as Sum)."""
    op = ReduceOp(op)
    return ReduceOp.Sum if op is ReduceOp.Average else int(op)
