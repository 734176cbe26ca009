"""Reduction operations."""

from __future__ import annotations

import enum

from ._lib import Op


class ReduceOp(enum.IntEnum):
    """Reduction op of allreduce / reducescatter.  Average is Sum followed by 1/size."""

    Average = -1
    Sum = int(Op.SUM)
    Min = int(Op.MIN)
    Max = int(Op.MAX)
    Product = int(Op.PROD)


Average = ReduceOp.Average
Sum = ReduceOp.Sum
Min = ReduceOp.Min
Max = ReduceOp.Max
Product = ReduceOp.Product


# ReduceOp -> C op code (Average is carried out as Sum, then scaled)
C_OP: dict[ReduceOp, int] = {op: int(Op.SUM) if op is ReduceOp.Average else int(op)
                             for op in ReduceOp}


def c_op(op: ReduceOp | int) -> int:
    """The C op code for ``op`` (Average is carried out as Sum)."""
    return C_OP[ReduceOp(op)]
