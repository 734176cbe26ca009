"""Fused collectives on lists of NumPy arrays, shared by the framework adapters (JAX, MXNet).

Every list is reduced with one C allreduce per dtype: the arrays are packed into one
buffer, each at a 64-byte aligned offset, so that the results are aligned views that JAX
(and DLPack consumers) can adopt without a copy.  Ranks agree on the list's layout (count,
shapes, dtypes, a description such as a pytree structure) the first time a layout is used;
a disagreement raises ``MismatchError`` on every rank, naming the ranks that differ."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ._args import prepare as _guarded
from ._lib import ReqKind
from .collectives import allreduce, broadcast
from .errors import MismatchError
from .objects import allgather_object
from .ops import ReduceOp
from .process_sets import ProcessSet, context_of

ALIGN = 64

# layouts this process has already agreed on with its peers, per (process set, kind)
_agreed: set[tuple[Any, str, str]] = set()


def aligned_empty(shape: Sequence[int], dtype: Any) -> np.ndarray:
    """An uninitialised C-contiguous array whose data starts on a 64-byte boundary."""
    dt = np.dtype(dtype)
    n = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
    raw = np.empty(n + ALIGN, np.uint8)
    off = (-raw.ctypes.data) % ALIGN
    return raw[off:off + n].view(dt).reshape(tuple(shape))


def prepare(fn: Callable[[], Any], process_set: ProcessSet | None) -> Any:
    """Run ``fn`` (local argument checks and conversions); if it raises, make the peers'
    pending collective fail too (MismatchError naming this rank) instead of leaving them
    waiting, then re-raise."""
    return _guarded(context_of(process_set), ReqKind.ALLREDUCE, fn)


def layout(arrays: Sequence[np.ndarray], structure: str = "") -> str:
    """A short text describing ``arrays`` (shapes and dtypes) and their ``structure``."""
    parts = [f"{a.dtype.str}{list(a.shape)}" for a in arrays]
    return f"{structure} [{', '.join(parts)}]" if structure else f"[{', '.join(parts)}]"


def agree(description: str, what: str, kind: str, process_set: ProcessSet | None) -> None:
    """Check, once per distinct ``description``, that every rank passes the same one.

    Costs one small allgather the first time a description is seen; afterwards the C core's
    own count/dtype agreement guards each call.  Raises MismatchError on every rank."""
    digest = hashlib.sha1(description.encode()).hexdigest()
    key = (None if process_set is None else tuple(process_set.ranks or ()), kind, digest)
    if key in _agreed:
        return
    seen = allgather_object((digest, description[:2000]), process_set=process_set)
    if len({d for d, _ in seen}) > 1:
        ref = seen[0][0]
        listing = "; ".join(f"rank {r}: {desc}" for r, (d, desc) in enumerate(seen)
                            if d != ref or r == 0)
        raise MismatchError(f"{what}: ranks passed different structures ({listing})")
    _agreed.add(key)


def _pack(arrays: list[np.ndarray], fill: bool = True) -> tuple[np.ndarray, list[np.ndarray]]:
    """One aligned buffer holding every array (copied in when ``fill``), and the views."""
    dt = arrays[0].dtype
    step = max(1, ALIGN // dt.itemsize)
    offsets, total = [], 0
    for a in arrays:
        offsets.append(total)
        total += -(-a.size // step) * step
    buf = aligned_empty((total,), dt)
    views = []
    for a, off in zip(arrays, offsets, strict=True):
        v = buf[off:off + a.size]
        if fill:
            v[...] = a.reshape(-1)
        views.append(v.reshape(a.shape))
    if fill:  # the padding between arrays takes part in the reduction: make it defined
        pos = 0
        for a, off in zip(arrays, offsets, strict=True):
            buf[pos:off] = 0
            pos = off + a.size
        buf[pos:] = 0
    return buf, views


def _groups(arrays: Sequence[np.ndarray]) -> dict[np.dtype, list[int]]:
    """Indices of ``arrays`` by dtype, in order of first appearance (the same on every rank
    once the layouts agree)."""
    out: dict[np.dtype, list[int]] = {}
    for i, a in enumerate(arrays):
        out.setdefault(a.dtype, []).append(i)
    return out


def fused_allreduce(arrays: Sequence[np.ndarray], op: ReduceOp = ReduceOp.Average,
                    name: str = "fused", prescale_factor: float = 1.0,
                    postscale_factor: float = 1.0, process_set: ProcessSet | None = None,
                    structure: str = "") -> list[np.ndarray]:
    """Allreduce every array of ``arrays`` with one collective per dtype; return the
    results (new, 64-byte aligned arrays) in the same order."""
    arrays = [np.asarray(a) for a in arrays]
    what = f"allreduce '{name}'"
    context_of(process_set)  # NotInitializedError / not a member, before any communication
    agree(layout(arrays, structure), what, "allreduce", process_set)
    out: list[np.ndarray | None] = [None] * len(arrays)
    for dt, idx in _groups(arrays).items():
        if len(idx) == 1:
            a = arrays[idx[0]]
            res = aligned_empty(a.shape, dt)
            out[idx[0]] = allreduce(np.ascontiguousarray(a), op=op, name=f"{name}.{dt}",
                                    prescale_factor=prescale_factor,
                                    postscale_factor=postscale_factor, out=res,
                                    process_set=process_set)
            continue
        buf, views = _pack([arrays[i] for i in idx])
        allreduce(buf, op=op, name=f"{name}.{dt}", prescale_factor=prescale_factor,
                  postscale_factor=postscale_factor, out=buf, process_set=process_set)
        for i, v in zip(idx, views, strict=True):
            out[i] = v
    return out  # type: ignore[return-value]


def fused_broadcast(arrays: Sequence[np.ndarray], root_rank: int = 0, name: str = "fused",
                    process_set: ProcessSet | None = None,
                    structure: str = "") -> list[np.ndarray]:
    """``root_rank``'s arrays on every rank (one broadcast per dtype; bool travels as
    uint8); new aligned arrays in the same order."""
    arrays = [np.asarray(a) for a in arrays]
    context_of(process_set)
    agree(layout(arrays, structure), f"broadcast '{name}'", "broadcast", process_set)
    wire = [a.view(np.uint8) if a.dtype == np.bool_ else a for a in arrays]
    out: list[np.ndarray | None] = [None] * len(arrays)
    for dt, idx in _groups(wire).items():
        buf, views = _pack([wire[i] for i in idx])
        broadcast(buf, root_rank, name=f"{name}.{dt}", out=buf, process_set=process_set)
        for i, v in zip(idx, views, strict=True):
            out[i] = v.view(np.bool_) if arrays[i].dtype == np.bool_ else v
    return out  # type: ignore[return-value]
