"""Averaging sparse (COO) torch tensors across ranks, as Horovod does: every rank's indices
and values are allgathered, so the result holds every rank's entries (duplicate indices
stay uncoalesced; torch sums them when the tensor is used or coalesced)."""

from __future__ import annotations

from typing import Any

import torch

from .._lib import ReqKind
from ..asyncapi import allgather_async
from ..ops import ReduceOp
from ..process_sets import ProcessSet, context_of


class SparseHandle:
    """Two allgathers (indices, values) waited on as one; ``wait()`` returns the sparse
    result."""

    def __init__(self, hi: Any, hv: Any, size: torch.Size, divide: int):
        self._hi, self._hv, self._size, self._divide = hi, hv, size, divide

    def wait(self, timeout: float | None = None) -> torch.Tensor:
        values = self._hv.wait(timeout)
        indices = self._hi.wait(timeout)
        if self._divide != 1:
            values = values / self._divide
        return torch.sparse_coo_tensor(indices.transpose(0, 1), values, self._size)

    __call__ = wait  # Horovod's sparse handles are callables

    def done(self) -> bool:
        return self._hi.done() and self._hv.done()


def sparse_allreduce_async(tensor: torch.Tensor, name: str | None, op: ReduceOp,
                           process_set: ProcessSet | None) -> SparseHandle:
    """Start the allreduce of a sparse COO tensor (``op`` Sum or Average).  A bad argument
    on one rank fails both allgathers on every rank at once (the other ranks get its
    reason), as every other collective does."""
    kw = {} if process_set is None or process_set.ranks is None else {"process_set": process_set}
    eng = context_of(kw.get("process_set")).get_engine()
    # the names the other ranks use (unnamed: the next two allgather names, in this order)
    ni = f"{name}.indices" if name else eng.auto_name("allgather")
    nv = f"{name}.values" if name else eng.auto_name("allgather")
    try:
        if not tensor.is_sparse:
            raise TypeError("sparse_allreduce_async needs a sparse COO tensor "
                            f"(layout {tensor.layout})")
        op = ReduceOp(op)
        if op not in (ReduceOp.Sum, ReduceOp.Average):
            raise ValueError(f"a sparse allreduce sums or averages, not {op.name}")
        t = tensor.coalesce()
    except Exception as exc:
        eng.reject(ni, ReqKind.ALLGATHER, exc)
        eng.reject(nv, ReqKind.ALLGATHER, exc)
        raise
    # indices go transposed (one row per entry): allgather concatenates along dimension 0
    hi = allgather_async(t.indices().transpose(0, 1).contiguous(), name=ni, **kw)
    hv = allgather_async(t.values().contiguous(), name=nv, **kw)
    n = process_set.size() if kw else _world_size()
    return SparseHandle(hi, hv, t.size(), n if op is ReduceOp.Average else 1)


def _world_size() -> int:
    from ..topology import size

    return size()
