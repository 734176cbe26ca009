"""Synchronous collectives on NumPy arrays, buffer-protocol objects and torch tensors.

GPU arrays (CuPy, torch.cuda, ``__cuda_array_interface__`` / DLPack producers) are routed
from the slow paths to ``ringred.device``."""

from __future__ import annotations

from threading import get_ident as _get_ident
from typing import Any

import numpy as np

from . import _log, _state, _torch_fast
from . import device as _device
from ._args import (
    check_name,
    fast_allreduce_args,
    host_finish,
    host_output,
    label,
    prepare,
    raise_status,
    root_of,
    scales,
    split_rows,
    total_rows,
)
from ._arrays import as_array, contiguous, is_device_array
from ._lib import (
    NULL,
    ReqKind,
    cast,
    cbuf,
    from_buffer,
    new,
    rr_allgather,
    rr_allreduce,
    rr_barrier,
    rr_broadcast,
    rr_poison,
    rr_reducescatter,
)
from .errors import NotInitializedError
from .ops import ReduceOp, c_op
from .process_sets import ProcessSet, context_of

_ALLREDUCE, _BROADCAST, _ALLGATHER, _REDUCESCATTER = (
    ReqKind.ALLREDUCE, ReqKind.BROADCAST, ReqKind.ALLGATHER, ReqKind.REDUCESCATTER)


def allreduce(
    x: Any,
    op: ReduceOp = ReduceOp.Average,
    name: str | None = None,
    prescale_factor: float = 1.0,
    postscale_factor: float = 1.0,
    out: Any = None,
    process_set: ProcessSet | None = None,
) -> Any:
    """Reduce ``x`` across all ranks and return the result (same type and shape as ``x``).

    ``op`` is Average (default), Sum, Min, Max or Product.  Average of integers divides
    with truncation toward zero.  ``prescale_factor`` multiplies the input and
    ``postscale_factor`` the result (integers: in float64, truncated toward zero, saturated
    at the type's range, as in Horovod).  ``out`` receives the result
    (``out=x`` reduces in place).  Raises MismatchError on every rank when ranks disagree
    on the element count, dtype, op or scale factors.
    """
    ctx = _state._ctx if process_set is None else context_of(process_set)
    if ctx is None:
        raise NotInitializedError("ringred is not initialized: call ringred.init() first")
    if _LOGGER.isEnabledFor(10) and _log.debug_enabled():  # RINGRED_LOG=debug (10: DEBUG)
        return _logged_allreduce(ctx, x, op, name, prescale_factor, postscale_factor, out,
                                 process_set)
    serial = ctx.serial
    serial.acquire()  # (not `with`: this is the hot path, and acquire/release cost half)
    try:
        if ctx.caller != _get_ident():
            ctx.claim()
        try:
            fast = fast_allreduce_args(ctx, x, op, prescale_factor, postscale_factor, out)
        except Exception:  # e.g. an unhashable op: the peers must not wait for this rank
            rr_poison(ctx.handle, _ALLREDUCE)
            raise
        if fast is not None and (name is None or (type(name) is str and "\0" not in name)):
            code, cop, post, div, res = fast
            st = rr_allreduce(ctx.handle, from_buffer(x), from_buffer(res), x.size, code, cop,
                              1.0, post, div)
            if st:
                raise_status(ctx, st, label("allreduce", name), x.shape)
            return res
        if fast is None and type(x) is not np.ndarray and (
                name is None or (type(name) is str and "\0" not in name)):
            try:
                tfast = _torch_fast.sync_args(ctx, x, op, prescale_factor, postscale_factor,
                                              out)
            except Exception:
                rr_poison(ctx.handle, _ALLREDUCE)
                raise
            if tfast is not None:  # a torch CPU tensor, by address
                code, cop, post, div, res = tfast
                st = rr_allreduce(ctx.handle, cast("void *", x.data_ptr()),
                                  cast("void *", res.data_ptr()), x.numel(), code, cop, 1.0,
                                  post, div)
                if st:
                    raise_status(ctx, st, label("allreduce", name), tuple(x.shape))
                return res
        if is_device_array(x):
            what = prepare(ctx, _ALLREDUCE, lambda: label("allreduce", check_name(name)))
            return _device.allreduce(ctx, x, op, what, prescale_factor, postscale_factor, out)

        def prep():
            what = label("allreduce", check_name(name))
            op_ = ReduceOp(op)
            w = as_array(x)
            src = contiguous(w.arr)
            dst, wo = host_output(w, out, src.shape, what)
            pre = float(prescale_factor)
            post, div = scales(w.code, op_, ctx.size, pre, float(postscale_factor))
            return what, op_, w, src, dst, wo, pre, float(post), div

        what, op_, w, src, dst, wo, pre, post, div = prepare(ctx, _ALLREDUCE, prep)
        st = rr_allreduce(ctx.handle, cbuf(src), cbuf(dst), src.size, w.code, c_op(op_), pre,
                          post, div)
        if st:
            raise_status(ctx, st, what, src.shape)
        return host_finish(w, dst, wo, out)
    finally:
        serial.release()


_LOGGER = _log.logger


def _logged_allreduce(ctx, x, op, name, pre, post, out, process_set):
    """allreduce with its plan logged (RINGRED_LOG=debug); off the fast path."""
    before = _log.zero_copy_calls(ctx)
    with _log.suppressed():
        res = allreduce(x, op, name, pre, post, out, process_set)
    label = f" '{name}'" if name else ""
    _log.call(ctx, "allreduce", x, f"{label}, op {ReduceOp(op).name}", before)
    return res


def broadcast(x: Any, root_rank: int, name: str | None = None, out: Any = None,
              process_set: ProcessSet | None = None) -> Any:
    """Return ``root_rank``'s ``x`` on every rank (``out=x`` broadcasts in place)."""
    ctx = context_of(process_set)
    with ctx.serial:
        ctx.claim()
        if is_device_array(x):
            what, root = prepare(ctx, _BROADCAST, lambda: _broadcast_args(ctx, name, root_rank))
            return _device.broadcast(ctx, x, root, what, out)

        def prep():
            what, root = _broadcast_args(ctx, name, root_rank)
            w = as_array(x)
            dst, wo = host_output(w, out, w.arr.shape, what)
            if dst is not w.arr:
                dst[...] = w.arr
            return what, root, w, dst, wo

        what, root, w, dst, wo = prepare(ctx, _BROADCAST, prep)
        st = rr_broadcast(ctx.handle, cbuf(dst), dst.size, w.code, root)
        if st:
            raise_status(ctx, st, what, dst.shape)
        return host_finish(w, dst, wo, out)


def _broadcast_args(ctx: _state.Context, name: Any, root_rank: Any) -> tuple[str, int]:
    what = label("broadcast", check_name(name))
    return what, root_of(root_rank, ctx, what)


def allgather(x: Any, name: str | None = None, process_set: ProcessSet | None = None) -> Any:
    """Concatenate every rank's ``x`` along the first dimension (which may differ by rank)."""
    ctx = context_of(process_set)
    with ctx.serial:
        ctx.claim()
        return _allgather(ctx, x, name, process_set)


def _allgather(ctx: _state.Context, x: Any, name: Any, process_set: ProcessSet | None) -> Any:
    if is_device_array(x):
        what = prepare(ctx, _ALLGATHER, lambda: label("allgather", check_name(name)))
        return _device.allgather(ctx, x, what)

    def prep():
        what = label("allgather", check_name(name))
        w = as_array(x)
        if w.arr.ndim == 0:
            raise ValueError(f"{what}: 0-d arrays cannot be gathered; reshape to (1,)")
        src = contiguous(w.arr)
        return what, w, src

    what, w, src = prepare(ctx, _ALLGATHER, prep)
    row = int(np.prod(src.shape[1:], dtype=np.int64))
    counts = new("size_t[]", ctx.size)
    st = rr_allgather(ctx.handle, cbuf(src), src.size, NULL, w.code, row, counts)
    if st:
        raise_status(ctx, st, what, src.shape[1:])
    # zero-width rows: the element counts cannot tell the first dimension
    rows = sum(counts) // row if row else total_rows(ctx, src.shape[0], what)
    # the peers learn of a failure here (out of memory) from the data phase's agreement
    res = prepare(ctx, _ALLGATHER, lambda: np.empty((rows,) + src.shape[1:], src.dtype))
    st = rr_allgather(ctx.handle, cbuf(src), src.size, cbuf(res), w.code, row, counts)
    if st:
        raise_status(ctx, st, what)
    return w.back(res)


def reducescatter(x: Any, op: ReduceOp = ReduceOp.Average, name: str | None = None,
                  process_set: ProcessSet | None = None, prescale_factor: float = 1.0,
                  postscale_factor: float = 1.0) -> Any:
    """Reduce ``x`` across ranks and return this rank's share of the first dimension.

    Rows are split as evenly as possible, lower ranks taking one extra row each.
    ``prescale_factor`` multiplies the input and ``postscale_factor`` the result, as in
    ``allreduce``.
    """
    ctx = context_of(process_set)
    with ctx.serial:
        ctx.claim()
        return _reducescatter(ctx, x, op, name, float(prescale_factor), float(postscale_factor))


def _reducescatter(ctx: _state.Context, x: Any, op: Any, name: Any, pre: float,
                   post_: float) -> Any:
    if is_device_array(x):
        def dprep() -> str:
            what = label("reducescatter", check_name(name))
            if pre != 1.0 or post_ != 1.0:
                raise ValueError(f"{what}: scale factors on device arrays are not supported")
            return what

        return _device.reducescatter(ctx, x, op, prepare(ctx, _REDUCESCATTER, dprep))

    def prep():
        what = label("reducescatter", check_name(name))
        op_ = ReduceOp(op)
        w = as_array(x)
        if w.arr.ndim == 0:
            raise ValueError(f"{what}: 0-d arrays cannot be scattered; reshape to (1,)")
        src = contiguous(w.arr)
        rows = split_rows(src.shape[0], ctx.size)
        res = np.empty((rows[ctx.rank],) + src.shape[1:], src.dtype)
        return what, op_, w, src, rows, res

    what, op_, w, src, rows, res = prepare(ctx, _REDUCESCATTER, prep)
    row = int(np.prod(src.shape[1:], dtype=np.int64))
    counts = new("size_t[]", [r * row for r in rows])
    post, div = scales(w.code, op_, ctx.size, pre, post_)
    st = rr_reducescatter(
        ctx.handle, cbuf(src), src.size, cbuf(res), counts, w.code, c_op(op_), pre, post, div
    )
    if st:
        raise_status(ctx, st, what, src.shape)
    return w.back(res)


def barrier(process_set: ProcessSet | None = None) -> None:
    """Block until every rank (of the process set) has called barrier()."""
    ctx = context_of(process_set)
    with ctx.serial:
        ctx.claim()
        st = rr_barrier(ctx.handle)
        if st:
            raise_status(ctx, st, "barrier")
