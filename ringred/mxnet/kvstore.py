"""The ``dist_ringred`` kvstore: ``gluon.Trainer(..., kvstore="dist_ringred")``.

MXNet's Trainer creates a kvstore from a name only when the name contains "dist" or the
process drives several devices (a single-device process with ``kvstore="ringred"`` would
silently train alone), hence the name.  Like ``dist_sync`` it sums the gradients of all
ranks (``pushpull``) and starts every rank from rank 0's parameters (``broadcast``);
updates run on the workers (``update_on_kvstore`` is False)."""

from __future__ import annotations

from typing import Any

import numpy as np
from mxnet.kvstore import KVStoreBase

from .. import _state, topology
from .. import collectives as _c
from .._fused import aligned_empty, prepare
from ..ops import ReduceOp
from ._convert import host_view


def _as_list(v: Any) -> list:
    return list(v) if isinstance(v, list | tuple) else [v]


def _local_sum(values: list, what: str) -> np.ndarray:
    """The sum of this rank's copies (one per device context) as a new aligned array."""
    first = host_view(values[0], what=what)
    acc = aligned_empty(first.shape, first.dtype)
    acc[...] = first
    for v in values[1:]:
        acc += host_view(v, what=what)
    return acc


def _write(outs: list, res: np.ndarray, what: str) -> None:
    for o in outs:
        host_view(o, writable=True, what=what)[...] = res


class DistRingred(KVStoreBase):
    """A kvstore over ringred's collectives (registered as ``dist_ringred``)."""

    def __init__(self) -> None:
        if not _state.is_initialized():
            _state.init()

    def broadcast(self, key: Any, value: Any, out: Any, priority: int = 0) -> None:
        """Rank 0's ``value`` into every NDArray of ``out`` on every rank."""
        what = f"kvstore broadcast of key {key!r}"
        buf = prepare(lambda: _local_sum(_as_list(value)[:1], what), None)
        _c.broadcast(buf, 0, name=f"kv.{key}", out=buf)
        _write(_as_list(out), buf, what)

    def pushpull(self, key: Any, value: Any, out: Any = None, priority: int = 0) -> None:
        """Sum ``value`` (the copies on this rank's devices, then across ranks) into
        ``out`` (default: ``value`` itself)."""
        what = f"kvstore pushpull of key {key!r}"
        values = _as_list(value)
        buf = prepare(lambda: _local_sum(values, what), None)
        _c.allreduce(buf, op=ReduceOp.Sum, name=f"kv.{key}", out=buf)
        _write(values if out is None else _as_list(out), buf, what)

    @staticmethod
    def is_capable(capability: str) -> bool:
        """No capability: in particular the optimizer runs on the workers."""
        return False

    def set_optimizer(self, optimizer: Any) -> None:
        raise NotImplementedError("dist_ringred updates on the workers (update_on_kvstore "
                                  "is False)")

    def save_optimizer_states(self, fname: str, dump_optimizer: bool = False) -> None:
        raise NotImplementedError("dist_ringred keeps no optimizer state: use "
                                  "trainer.save_states")

    def load_optimizer_states(self, fname: str) -> None:
        raise NotImplementedError("dist_ringred keeps no optimizer state: use "
                                  "trainer.load_states")

    @property
    def type(self) -> str:
        return "dist_ringred"

    @property
    def rank(self) -> int:
        return topology.rank()

    @property
    def num_workers(self) -> int:
        return topology.size()


# MXNet registers a kvstore under its class name, lowercased: "dist_ringred"
KVStoreBase.register(type("dist_ringred", (DistRingred,), {"__module__": __name__}))
