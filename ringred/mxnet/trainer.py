"""``DistributedTrainer`` (a ``gluon.Trainer`` that averages gradients through ringred)
and ``broadcast_parameters``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import mxnet as mx
from mxnet import gluon

from .._fused import fused_allreduce, fused_broadcast, prepare
from ..errors import UnsupportedError
from ..ops import ReduceOp
from ..process_sets import ProcessSet
from ._convert import host_view


def _one_context(arrays: list, name: str, what: str) -> Any:
    if len(arrays) != 1:
        raise UnsupportedError(
            f"{what}: parameter {name!r} lives on {len(arrays)} contexts; ringred.mxnet "
            "takes one context per rank (launch one rank per device)")
    return arrays[0]


class DistributedTrainer(gluon.Trainer):
    """A ``gluon.Trainer`` whose ``step(batch_size)`` averages the gradients across ranks
    (one fused allreduce per dtype) before the optimizer's update.

    Every rank calls ``step`` with its own local batch size: training on ``n`` ranks with
    batches of ``b`` then equals training on one process with batches of ``n * b`` (the
    gradients are averaged, as in Horovod's ``DistributedTrainer``).  ``allreduce_grads()``
    and ``update()`` work as in ``gluon.Trainer`` (e.g. for gradient clipping between them).

    Args:
        params: ``net.collect_params()`` (a ``ParameterDict``) or a list of Parameters.
        optimizer: an optimizer name ("sgd", "adam", ...) or an ``mx.optimizer.Optimizer``.
        optimizer_params: the optimizer's keyword arguments, e.g. ``{"learning_rate": 0.1}``.
        op: ``ringred.Average`` (default) or ``ringred.Sum`` (MXNet ``dist_sync``'s sum).
        process_set: average within this ``ringred.ProcessSet`` only (default: all ranks).
    """

    def __init__(self, params: Any, optimizer: Any, optimizer_params: dict | None = None,
                 op: ReduceOp = ReduceOp.Average, process_set: ProcessSet | None = None,
                 name: str = "grad") -> None:
        op = ReduceOp(op)
        if op not in (ReduceOp.Average, ReduceOp.Sum):
            raise ValueError(f"op must be ringred.Average or ringred.Sum, not {op.name}")
        super().__init__(params, optimizer, optimizer_params=optimizer_params, kvstore=None,
                         update_on_kvstore=False)
        self._ringred_op = op
        self._ringred_set = process_set
        self._ringred_name = name

    def _allreduce_grads(self) -> None:
        def grads() -> tuple[list, list, list]:
            mx.nd.waitall()  # one wait for the engine (backward) instead of one per gradient
            names, nds, views = [], [], []
            for param in self._params:
                if param.grad_req == "null":
                    continue
                g = _one_context(param.list_grad(), param.name, "DistributedTrainer")
                names.append(param.name)
                nds.append(g)
                views.append(host_view(g, writable=True, what=f"gradient of {param.name}",
                                       wait=False))
            return names, nds, views

        names, nds, views = prepare(grads, self._ringred_set)
        if not views:
            return
        res = fused_allreduce(views, self._ringred_op, self._ringred_name,
                              process_set=self._ringred_set, structure=" ".join(names))
        for v, r in zip(views, res, strict=True):
            v[...] = r
        del nds  # the NDArrays stay alive until their views are written


def _named(params: Any) -> list[tuple[str, Any]]:
    if isinstance(params, Mapping) or hasattr(params, "items"):
        return sorted(params.items(), key=lambda kv: str(kv[0]))
    raise TypeError("broadcast_parameters takes net.collect_params() or a dict of "
                    f"Parameters/NDArrays, not {type(params).__name__}")


def broadcast_parameters(params: Any, root_rank: int = 0,
                         process_set: ProcessSet | None = None) -> None:
    """Overwrite every parameter with ``root_rank``'s, in place (one fused broadcast per
    dtype).  ``params`` is ``net.collect_params()`` or a dict name -> NDArray; names are
    sorted, and must be the same on every rank (MismatchError otherwise).  Parameters must
    be initialized, shapes included: run ``net.initialize()`` and one forward pass first."""

    def views() -> tuple[list, list, list]:
        names, nds, out = [], [], []
        for name, p in _named(params):
            if isinstance(p, gluon.Parameter):
                try:
                    data = p.list_data()
                except (RuntimeError, mx.gluon.parameter.DeferredInitializationError) as exc:
                    raise RuntimeError(
                        f"broadcast_parameters: parameter {name!r} is not initialized yet "
                        "(call net.initialize() and run one forward pass first)") from exc
                nd = _one_context(data, name, "broadcast_parameters")
                others = data
            elif isinstance(p, mx.nd.NDArray):
                nd, others = p, [p]
            else:
                raise TypeError(f"parameter {name!r} is a {type(p).__name__}, not a "
                                "gluon.Parameter or NDArray")
            names.append(str(name))
            nds.append(others)
            out.append(host_view(nd, writable=True, what=f"parameter {name}"))
        return names, nds, out

    names, nds, out = prepare(views, process_set)
    if not out:
        return
    res = fused_broadcast(out, root_rank, "broadcast_parameters", process_set,
                          structure=" ".join(names))
    for v, r in zip(out, res, strict=True):
        v[...] = r
