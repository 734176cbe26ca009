"""Make every rank start alike: broadcast parameters and optimizer state from one rank."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import _state
from .._arrays import is_device_array, is_torch
from ..asyncapi import broadcast_async
from ..objects import broadcast_object
from ..optim.base import Optimizer as RingredOptimizer
from ..optim.base import is_array

__all__ = ["broadcast_parameters", "broadcast_optimizer_state"]


def _wire(t: Any) -> Any:
    """A view of ``t`` that ringred can broadcast in place (bool as uint8)."""
    if is_torch(t):
        import torch

        t = t.detach()
        return t.view(torch.uint8) if t.dtype == torch.bool else t
    if getattr(t, "dtype", None) == np.bool_:  # NumPy and CuPy
        return t.view(np.uint8)
    return t


def broadcast_parameters(params: Any, root_rank: int = 0) -> None:
    """Overwrite the parameters on every rank with ``root_rank``'s, in place.

    ``params`` is a torch ``state_dict()``, an iterable of ``(name, tensor)`` pairs such as
    ``model.named_parameters()``, or a dict name -> NumPy array (a dict may also hold
    Python scalars, which are replaced by ``root_rank``'s via ``broadcast_object``).  Names
    must be the same on every rank; they are sorted so every rank submits the same order.
    """
    if isinstance(params, Mapping):
        items = list(params.items())
    elif isinstance(params, Iterable):
        items = list(params)
        if any(not isinstance(kv, tuple) or len(kv) != 2 for kv in items):
            raise TypeError("broadcast_parameters takes a state_dict, a dict of arrays or "
                            "(name, tensor) pairs such as model.named_parameters()")
    else:
        raise TypeError(f"broadcast_parameters cannot use {type(params).__name__}")
    items.sort(key=lambda kv: str(kv[0]))
    handles = []
    scalars: dict[Any, Any] = {}
    for name, t in items:
        if is_torch(t) or isinstance(t, np.ndarray) or is_device_array(t):
            # host arrays and GPU arrays (torch.cuda, CuPy) alike, in place, on their device
            w = _wire(t)
            handles.append(broadcast_async(w, root_rank, name=f"broadcast.{name}", out=w))
        elif isinstance(params, MutableMapping):
            scalars[name] = t
        else:
            raise TypeError(f"parameter {name!r} is a {type(t).__name__}, not an array/tensor")
    for h in handles:
        h.wait()
    if scalars:
        for name, v in broadcast_object(scalars, root_rank).items():
            params[name] = v


@dataclass(frozen=True)
class _Slot:
    """Stands for the ``index``-th array of a state tree while its skeleton is pickled."""

    index: int
    torch: bool
    shape: tuple[int, ...]
    dtype: Any
    cuda: bool = False  # a torch tensor on a GPU: allocated on this rank's current GPU


def _split(tree: Any, arrays: list[Any]) -> Any:
    """The tree with every array replaced by a _Slot; arrays appended to ``arrays``."""
    if isinstance(tree, dict):
        return {k: _split(v, arrays) for k, v in tree.items()}
    if isinstance(tree, list | tuple):
        return type(tree)(_split(v, arrays) for v in tree)
    if is_torch(tree):
        arrays.append(tree.detach())
        return _Slot(len(arrays) - 1, True, tuple(tree.shape), tree.dtype,
                     tree.device.type == "cuda")
    if is_array(tree):
        a = tree if isinstance(tree, np.ndarray) else tree.get()
        arrays.append(a)
        return _Slot(len(arrays) - 1, False, a.shape, a.dtype)
    return tree


def _fill(tree: Any, arrays: list[Any]) -> Any:
    if isinstance(tree, dict):
        return {k: _fill(v, arrays) for k, v in tree.items()}
    if isinstance(tree, list | tuple):
        return type(tree)(_fill(v, arrays) for v in tree)
    if isinstance(tree, _Slot):
        return arrays[tree.index]
    return tree


def _empty(slot: _Slot) -> Any:
    if slot.torch:
        import torch

        device = torch.device("cuda", torch.cuda.current_device()) if slot.cuda else None
        return torch.empty(slot.shape, dtype=slot.dtype, device=device)
    return np.empty(slot.shape, slot.dtype)


def _slots(tree: Any) -> list[_Slot]:
    out: list[_Slot] = []

    def walk(t: Any) -> None:
        if isinstance(t, dict):
            for v in t.values():
                walk(v)
        elif isinstance(t, list | tuple):
            for v in t:
                walk(v)
        elif isinstance(t, _Slot):
            out.append(t)

    walk(tree)
    return sorted(out, key=lambda s: s.index)


def broadcast_state_tree(tree: Any, root_rank: int = 0) -> Any:
    """``root_rank``'s nested dict/list of arrays and scalars, on every rank.

    The structure and scalars travel pickled (``broadcast_object``); the arrays travel
    as arrays (``broadcast_async``), so large states are not pickled.  Non-root ranks pass
    anything (it is ignored).
    """
    ctx = _state.current()
    arrays: list[Any] = []
    skeleton = _split(tree, arrays) if ctx.rank == root_rank else None
    skeleton = broadcast_object(skeleton, root_rank)
    if ctx.rank != root_rank:
        arrays = [_empty(s) for s in _slots(skeleton)]
    wires = [_wire(a) for a in arrays]
    handles = [
        broadcast_async(w, root_rank, name=f"broadcast_state.{i}", out=w)
        for i, w in enumerate(wires)
    ]
    for h in handles:
        h.wait()
    return _fill(skeleton, arrays)


def broadcast_optimizer_state(optimizer: Any, root_rank: int = 0) -> None:
    """Give every rank ``root_rank``'s optimizer state (and hyperparameters), in place.

    Works for ``torch.optim`` and ``ringred.optim`` optimizers, wrapped in
    ``DistributedOptimizer`` or not, also when the other ranks have not stepped yet (their
    state is empty): ``root_rank``'s whole ``state_dict()`` is broadcast — tensors as
    tensors, the rest pickled — and loaded with ``load_state_dict``.
    """
    inner = getattr(optimizer, "optimizer", optimizer)
    torch = sys.modules.get("torch")
    ok = isinstance(inner, RingredOptimizer) or (
        torch is not None and isinstance(inner, torch.optim.Optimizer)
    )
    if not ok:
        raise TypeError(
            f"broadcast_optimizer_state needs a torch.optim or ringred.optim optimizer, not "
            f"{type(optimizer).__name__}"
        )
    ctx = _state.current()
    sd = inner.state_dict() if ctx.rank == root_rank else None
    sd = broadcast_state_tree(sd, root_rank)
    if ctx.rank != root_rank:
        inner.load_state_dict(sd)
