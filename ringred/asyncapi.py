"""Asynchronous collectives through the background engine (Horovod's ``*_async`` API).

Tensors are handed over one by one, in whatever order each rank produces them; ranks match
them **by name**, small allreduces are fused, and communication runs in a background thread
while computation goes on::

    h = ringred.allreduce_async(grad, name="layer1.weight")
    ...                                  # more work
    avg = h.wait()                       # or ringred.synchronize(h)

Every ``*_async`` call returns a :class:`Handle`.  Its input (and ``out``) buffers must stay
alive and unmodified until ``wait()`` returns; the handle keeps references to them.  A name
may be in flight only once at a time (``DuplicateNameError``, a ValueError, at once).
Unnamed tensors get ``<kind>.noname.<n>`` from a per-kind counter, which matches across
ranks only if every rank makes its unnamed calls of that kind in the same order: name your
tensors when the order can differ.

The engine starts on the first asynchronous call (or ``join()``), which must therefore come
at the same point of every rank's ringred calls; ``ringred.shutdown()`` stops it, and
handles still pending then fail.  The synchronous calls (``ringred.allreduce`` ...) keep
their own communicator and may be mixed freely with these.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _async_device as _dev
from . import _state, _torch_fast
from ._args import (
    check_name,
    fast_allreduce_args,
    host_finish,
    host_output,
    root_of,
    scales,
    split_rows,
)
from ._arrays import as_array, contiguous, is_device_array
from ._engine import Handle
from ._lib import MAX_DIMS, NULL, ReqKind, cbuf, new
from .ops import C_OP, ReduceOp
from .process_sets import ProcessSet, context_of

__all__ = [
    "Handle", "allreduce_async", "broadcast_async", "allgather_async", "reducescatter_async",
    "grouped_allreduce", "grouped_allreduce_async", "poll", "synchronize", "join",
    "start_timeline", "stop_timeline",
]

_ALLREDUCE, _BROADCAST, _ALLGATHER, _REDUCESCATTER = (
    ReqKind.ALLREDUCE, ReqKind.BROADCAST, ReqKind.ALLGATHER, ReqKind.REDUCESCATTER)
_MAX_DIMS = MAX_DIMS


def _engine():
    return _state.current().get_engine()


_shape = _dev.shape_field


def _fields(name: Any, kind: int, send: Any, recv: Any, count: int, code: int, cop: int,
            pre: float, post: float, div: int, root: int, shape: list[int],
            group: Any = NULL, group_size: int = 0, backend: int = 0, device: int = 0,
            stream: int = 0) -> dict:
    return {"name": name, "kind": kind, "sendbuf": send, "recvbuf": recv, "count": count,
            "dtype": code, "op": cop, "prescale": pre, "postscale": post, "avg_div": div,
            "root": root, "ndim": len(shape), "shape": shape, "group": group,
            "group_size": group_size, "backend": backend, "device": device, "stream": stream}


def allreduce_async(
    x: Any,
    op: ReduceOp = ReduceOp.Average,
    name: str | None = None,
    prescale_factor: float = 1.0,
    postscale_factor: float = 1.0,
    out: Any = None,
    process_set: ProcessSet | None = None,
) -> Handle:
    """Start an allreduce of ``x`` (matched across ranks by ``name``); see ``allreduce``.

    ``wait()`` returns the result, of the same type and shape as ``x`` (``out`` if given;
    ``out=x`` reduces in place).
    """
    ctx = context_of(process_set)
    eng = ctx.get_engine()
    name = eng.auto_name("allreduce") if name is None else check_name(name)
    try:  # a local failure reaches the other ranks: they fail this name with its reason
        op_ = op if type(op) is ReduceOp else ReduceOp(op)
        if type(x) is np.ndarray:
            fast = fast_allreduce_args(ctx, x, op_, prescale_factor, postscale_factor,
                                       eng.results.take(x) if out is None else out)
            if fast is not None and x.ndim <= _MAX_DIMS:
                code, cop, post, div, res = fast
                return eng.allreduce(name, x, res, code, cop, post, div)
        else:
            h = _torch_fast.allreduce(ctx, eng, x, op_, prescale_factor, postscale_factor,
                                      out, name)
            if h is not None:
                return h
        if is_device_array(x):
            return _dev.allreduce(eng, ctx.size, x, op_, name, prescale_factor,
                                  postscale_factor, out, _fields)
        what = f"allreduce '{name}'"
        w = as_array(x)
        src = contiguous(w.arr)
        dst, wo = host_output(w, out, src.shape, what)
        pre = float(prescale_factor)
        post, div = scales(w.code, op_, ctx.size, pre, float(postscale_factor))
        nm = new("char[]", name.encode())
        req = new("rr_request *", _fields(
            nm, _ALLREDUCE, cbuf(src), cbuf(dst), src.size, w.code,
            C_OP[op_], pre, float(post), div, 0, _shape(src.shape)))
        return eng.submit(req, 1, name, (x, src, dst, out), lambda: host_finish(w, dst, wo, out))
    except Exception as exc:
        eng.reject(name, _ALLREDUCE, exc)
        raise


def broadcast_async(x: Any, root_rank: int, name: str | None = None, out: Any = None,
                    process_set: ProcessSet | None = None) -> Handle:
    """Start a broadcast of ``root_rank``'s ``x``; ``wait()`` returns it on every rank."""
    ctx = context_of(process_set)
    eng = ctx.get_engine()
    name = eng.auto_name("broadcast") if name is None else check_name(name)
    try:  # a local failure reaches the other ranks: they fail this name with its reason
        what = f"broadcast '{name}'"
        root = root_of(root_rank, ctx, what)
        if is_device_array(x):
            return _dev.broadcast(eng, x, root, name, out, _fields)
        w = as_array(x)
        dst, wo = host_output(w, out, w.arr.shape, what)
        if dst is not w.arr:
            dst[...] = w.arr
        nm = new("char[]", name.encode())
        req = new("rr_request *", _fields(
            nm, _BROADCAST, NULL, cbuf(dst), dst.size, w.code, 0, 1.0, 1.0, 1,
            root, _shape(dst.shape)))
        return eng.submit(req, 1, name, (x, dst, out), lambda: host_finish(w, dst, wo, out))
    except Exception as exc:
        eng.reject(name, _BROADCAST, exc)
        raise


def allgather_async(x: Any, name: str | None = None,
                    process_set: ProcessSet | None = None) -> Handle:
    """Start an allgather: ``wait()`` returns every rank's ``x`` concatenated along the first
    dimension (which may differ by rank; the others must agree)."""
    ctx = context_of(process_set)
    eng = ctx.get_engine()
    name = eng.auto_name("allgather") if name is None else check_name(name)
    try:  # a local failure reaches the other ranks: they fail this name with its reason
        return _allgather_async(eng, x, name)
    except Exception as exc:
        eng.reject(name, _ALLGATHER, exc)
        raise


def _allgather_async(eng: Any, x: Any, name: str) -> Handle:
    if is_device_array(x):
        return _dev.allgather(eng, x, name, _fields)
    w = as_array(x)
    if w.arr.ndim == 0:
        raise ValueError(f"allgather '{name}': 0-d arrays cannot be gathered; reshape to (1,)")
    src = contiguous(w.arr)
    nm = new("char[]", name.encode())
    req = new("rr_request *", _fields(
        nm, _ALLGATHER, cbuf(src), NULL, src.size, w.code, 0, 1.0, 1.0, 1,
        0, _shape(src.shape)))
    holder: list[Handle] = []

    def finish() -> Any:
        rows, copy = eng.gathered(holder[0])
        res = np.empty((sum(rows),) + src.shape[1:], src.dtype)
        copy(cbuf(res), res.nbytes)
        return w.back(res)

    h = eng.submit(req, 1, name, (x, src), finish)
    holder.append(h)
    return h


def reducescatter_async(x: Any, op: ReduceOp = ReduceOp.Average,
                        name: str | None = None,
                        process_set: ProcessSet | None = None, prescale_factor: float = 1.0,
                        postscale_factor: float = 1.0) -> Handle:
    """Start a reducescatter: ``wait()`` returns this rank's share of the first dimension of
    the reduction (rows split as evenly as possible, lower ranks taking the extra rows),
    with the input scaled by ``prescale_factor`` and the result by ``postscale_factor``."""
    ctx = context_of(process_set)
    eng = ctx.get_engine()
    name = eng.auto_name("reducescatter") if name is None else check_name(name)
    try:  # a local failure reaches the other ranks: they fail this name with its reason
        return _reducescatter_async(ctx, eng, x, op, name, float(prescale_factor),
                                    float(postscale_factor))
    except Exception as exc:
        eng.reject(name, _REDUCESCATTER, exc)
        raise


def _reducescatter_async(ctx: Any, eng: Any, x: Any, op: Any, name: str, pre: float,
                         post_: float) -> Handle:
    op_ = ReduceOp(op)
    if is_device_array(x):
        if pre != 1.0 or post_ != 1.0:
            raise ValueError(f"reducescatter '{name}': scale factors on device arrays are "
                             "not supported")
        return _dev.reducescatter(eng, ctx.size, ctx.rank, x, op_, name, _fields)
    w = as_array(x)
    if w.arr.ndim == 0:
        raise ValueError(f"reducescatter '{name}': 0-d arrays cannot be scattered")
    src = contiguous(w.arr)
    rows = split_rows(src.shape[0], ctx.size)
    res = np.empty((rows[ctx.rank],) + src.shape[1:], src.dtype)
    post, div = scales(w.code, op_, ctx.size, pre, post_)
    nm = new("char[]", name.encode())
    req = new("rr_request *", _fields(
        nm, _REDUCESCATTER, cbuf(src), cbuf(res), src.size, w.code,
        C_OP[op_], pre, float(post), div, 0, _shape(src.shape)))
    return eng.submit(req, 1, name, (x, src, res), lambda: w.back(res))


def grouped_allreduce_async(
    xs: list,
    op: ReduceOp = ReduceOp.Average,
    name: str | None = None,
    prescale_factor: float = 1.0,
    postscale_factor: float = 1.0,
    process_set: ProcessSet | None = None,
) -> Handle:
    """Start an allreduce of every tensor in ``xs`` as one fused unit (negotiated and reduced
    together); ``wait()`` returns the list of results.  Members are named ``<name>[i]``."""
    ctx = context_of(process_set)
    eng = ctx.get_engine()
    xs = list(xs)
    if not xs:
        raise ValueError("grouped_allreduce: empty list of tensors")
    name = eng.auto_name("grouped_allreduce") if name is None else check_name(name)
    try:  # a local failure reaches the other ranks: they fail these names with its reason
        return _grouped_async(ctx, eng, xs, op, name, prescale_factor, postscale_factor)
    except Exception as exc:
        eng.reject(name, _ALLREDUCE, exc, group_size=len(xs))
        raise


def _grouped_async(ctx: Any, eng: Any, xs: list, op: Any, name: str, prescale_factor: float,
                   postscale_factor: float) -> Handle:
    op_ = ReduceOp(op)
    gname = name.encode()
    group = new("char[]", gname)
    fields, keep, outs = [], [], []
    for i, x in enumerate(xs):
        what = f"grouped_allreduce '{name}'[{i}]"
        nm = new("char[]", f"{name}[{i}]".encode())
        keep.append(nm)
        if is_device_array(x):
            f, refs, back = _dev.group_member(
                x, op_, ctx.size, prescale_factor, postscale_factor, what,
                lambda *a, nm=nm, **k: _fields(nm, *a, group=group, group_size=len(xs), **k))
            fields.append(f)
            keep += refs
            outs.append(back)
            continue
        w = as_array(x)
        src = contiguous(w.arr)
        dst = np.empty(src.shape, src.dtype)
        post, div = scales(w.code, op_, ctx.size, prescale_factor, postscale_factor)
        fields.append(_fields(
            nm, _ALLREDUCE, cbuf(src), cbuf(dst), src.size,
            w.code, C_OP[op_], float(prescale_factor), float(post), div, 0, _shape(src.shape),
            group, len(xs)))
        keep += [x, src, dst]
        outs.append(lambda w=w, dst=dst: w.back(dst))
    reqs = new("rr_request[]", fields)
    return eng.submit(reqs, len(xs), name, (tuple(keep), group),
                      lambda: [back() for back in outs])


def grouped_allreduce(
    xs: list,
    op: ReduceOp = ReduceOp.Average,
    name: str | None = None,
    prescale_factor: float = 1.0,
    postscale_factor: float = 1.0,
    process_set: ProcessSet | None = None,
) -> list:
    """Allreduce every tensor in ``xs`` as one fused unit and return the list of results."""
    return grouped_allreduce_async(xs, op, name, prescale_factor, postscale_factor,
                                   process_set).wait()


def poll(handle: Handle) -> bool:
    """True if ``handle``'s operation is done (never blocks)."""
    return handle.done()


def synchronize(handle: Handle) -> Any:
    """Wait for ``handle`` and return its result (``handle.wait()``)."""
    return handle.wait()


def join() -> int:
    """Declare that this rank has no more data.  Until every rank has joined, this rank takes
    part in the other ranks' allreduces with zeros (Average still divides by the full
    size); broadcast and allgather are refused meanwhile.  Returns the last rank to join."""
    return _engine().join()


def start_timeline(path: str) -> None:
    """Write a Chrome-trace timeline of the engine's activity to ``path`` (rank 0 writes;
    open it in Perfetto).  Same as setting RINGRED_TIMELINE before the engine starts."""
    _engine().timeline_start(str(path))


def stop_timeline() -> None:
    """Stop writing the timeline and close its file."""
    ctx = _state.current()
    if ctx.engine is not None:
        ctx.engine.timeline_stop()
