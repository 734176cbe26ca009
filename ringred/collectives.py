"""Synchronous collectives on NumPy arrays, buffer-protocol objects and torch tensors.

GPU arrays (CuPy, torch.cuda, ``__cuda_array_interface__`` / DLPack producers) are routed
from the slow paths to ``ringred.device``."""

from __future__ import annotations

import operator
from threading import get_ident as _get_ident
from typing import Any

import numpy as np

from . import _log, _state
from . import device as _device
from ._arrays import (
    _CODES,
    FLOAT_CODES,
    Wrapped,
    as_array,
    cbuf,
    check_writable,
    contiguous,
    is_device_array,
)
from ._lib import ffi, lib, make_error
from .errors import MismatchError, NotInitializedError
from .ops import ReduceOp, c_op
from .process_sets import ProcessSet, context_of

KIND_ALLREDUCE, KIND_BROADCAST, KIND_ALLGATHER, KIND_REDUCESCATTER = 1, 2, 3, 4
_C_OP = {ReduceOp.Average: 0, ReduceOp.Sum: 0, ReduceOp.Min: 1, ReduceOp.Max: 2,
         ReduceOp.Product: 3}


# Fast-path tables: native dtypes the C kernels take directly (bfloat16 goes the general
# way), and op -> (C op, is Average).
_FAST_CODES = {dt: c for dt, c in _CODES.items() if c != 6}
_FAST_OPS = {op: (_C_OP[op], op is ReduceOp.Average) for op in ReduceOp}


def fast_allreduce_args(ctx: _state.Context, x: Any, op: Any, pre: float, post: float,
                        out: Any) -> tuple[int, int, float, int, np.ndarray] | None:
    """(dtype code, C op, postscale, divisor, output array) when ``x`` and ``out`` can go
    straight to C: C-contiguous NumPy arrays of a native dtype, a writable ``out`` of the same
    shape and dtype (or none: a new array), no scale factors.  None sends the call down the
    general path, which also produces every error message.  About 1 us of Python."""
    if type(x) is not np.ndarray or pre != 1.0 or post != 1.0:
        return None
    code = _FAST_CODES.get(x.dtype)
    fop = _FAST_OPS.get(op)
    if code is None or fop is None or not x.flags.c_contiguous:
        return None
    if out is None:
        res = np.empty_like(x)
    elif (type(out) is np.ndarray and out.dtype == x.dtype and out.shape == x.shape
          and out.flags.c_contiguous and out.flags.writeable):
        res = out
    else:
        return None
    if not fop[1]:
        return code, fop[0], 1.0, 1, res
    if code >= 5:
        return code, fop[0], 1.0 / ctx.size, 1, res
    return code, fop[0], 1.0, ctx.size, res


def _ptr(a: np.ndarray) -> Any:
    return cbuf(a, ffi)


def _prepare(ctx: _state.Context, kind: int, fn):
    """Run local argument checks; if they fail, tell the other ranks before raising (they
    get a MismatchError "... rejected locally on rank r")."""
    try:
        return fn()
    except Exception:
        lib.rr_poison(ctx.handle, kind)
        raise


def check_name(name: Any) -> str | None:
    """``name`` if it is None or a str without NUL characters; TypeError otherwise."""
    if name is None or (type(name) is str and "\0" not in name):
        return name
    if isinstance(name, str):
        if "\0" in name:
            raise TypeError(f"a tensor name cannot contain NUL characters: {name!r}")
        return str(name)
    raise TypeError(f"a tensor name must be a str, not {type(name).__name__}")


def root_of(root_rank: Any, ctx: _state.Context, what: str) -> int:
    """The communicator rank of ``root_rank``, a global rank (as in Horovod: in a process set
    too): TypeError if it is not an integer, ValueError if it is out of range or, for a
    process set, not one of its members."""
    try:
        root = operator.index(root_rank)
    except TypeError:
        raise TypeError(f"{what}: the root rank must be an integer, not "
                        f"{type(root_rank).__name__} {root_rank!r}") from None
    members = ctx.members
    if members is None:
        if not 0 <= root < ctx.size:
            raise ValueError(f"{what}: root rank {root} is not in [0, {ctx.size})")
        return root
    try:
        return members.index(root)
    except ValueError:
        raise ValueError(f"{what}: root rank {root} is not a member of the process set "
                         f"{members} (root ranks are global ranks)") from None


def _label(kind: str, name: Any) -> str:
    return f"{kind} '{name}'" if name else kind


def _raise(ctx: _state.Context, st: int, what: str, shape: tuple | None = None,
           process_set: ProcessSet | None = None) -> None:
    """Raise the exception for C status ``st``.  A mismatch names this rank's shape (the C
    message lists every rank's element count); no further collective runs, so every rank
    leaves the failed call in step, whatever the others had called."""
    err = make_error(st, ctx.handle, what)
    if isinstance(err, MismatchError) and shape is not None and "rejected locally" not in str(err):
        err = MismatchError(f"{err} (shape on rank {ctx.rank}: {[int(d) for d in shape]})")
    raise err


def _output(w: Wrapped, out: Any, shape: tuple, what: str) -> tuple[np.ndarray, Any]:
    """The array to write into, and what to return to the caller."""
    if out is None:
        res = np.empty(shape, w.arr.dtype)
        return res, None
    wo = as_array(out)
    if wo.arr.shape != tuple(shape) or wo.arr.dtype != w.arr.dtype:
        raise ValueError(
            f"{what}: out has shape {wo.arr.shape} and dtype {wo.arr.dtype}, expected "
            f"{tuple(shape)} and {w.arr.dtype}"
        )
    check_writable(wo.arr, f"{what}: out")
    return (wo.arr if wo.contiguous else np.empty(shape, w.arr.dtype)), wo


def _finish(w: Wrapped, res: np.ndarray, wo: Any, out: Any) -> Any:
    if wo is None:
        return w.back(res)
    if res is not wo.arr:
        wo.arr[...] = res
    return out


def check_scales(code: int, dtype: Any, pre: float, post: float, what: str) -> None:
    """Scale factors on device data need a floating-point dtype: ValueError otherwise (host
    data of integer types is scaled like Horovod: in float64, truncated toward zero)."""
    if code not in FLOAT_CODES and (pre != 1.0 or post != 1.0):
        raise ValueError(f"{what}: scale factors need a floating-point dtype, not {dtype}")


def _scales(code: int, op: ReduceOp, size: int, pre: float, post: float) -> tuple[float, int]:
    """(postscale, integer divisor) for ``op``."""
    if op is ReduceOp.Average:
        if code in FLOAT_CODES:
            return post / size, 1
        return post, size
    return post, 1


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
            lib.rr_poison(ctx.handle, KIND_ALLREDUCE)
            raise
        if fast is not None and (name is None or (type(name) is str and "\0" not in name)):
            code, cop, post, div, res = fast
            st = lib.rr_allreduce(ctx.handle, ffi.from_buffer(x), ffi.from_buffer(res), x.size,
                                  code, cop, 1.0, post, div)
            if st:
                _raise(ctx, st, _label("allreduce", name), x.shape, process_set)
            return res
        if is_device_array(x):
            what = _prepare(ctx, KIND_ALLREDUCE, lambda: _label("allreduce", check_name(name)))
            return _device.allreduce(ctx, x, op, what, prescale_factor, postscale_factor, out)

        def prep():
            what = _label("allreduce", check_name(name))
            op_ = ReduceOp(op)
            w = as_array(x)
            src = contiguous(w.arr)
            dst, wo = _output(w, out, src.shape, what)
            pre = float(prescale_factor)
            post, div = _scales(w.code, op_, ctx.size, pre, float(postscale_factor))
            return what, op_, w, src, dst, wo, pre, float(post), div

        what, op_, w, src, dst, wo, pre, post, div = _prepare(ctx, KIND_ALLREDUCE, prep)
        st = lib.rr_allreduce(ctx.handle, _ptr(src), _ptr(dst), src.size, w.code, c_op(op_),
                              pre, post, div)
        if st:
            _raise(ctx, st, what, src.shape, process_set)
        return _finish(w, dst, wo, out)
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
            what, root = _prepare(ctx, KIND_BROADCAST, lambda: _broadcast_args(ctx, name,
                                                                                root_rank))
            return _device.broadcast(ctx, x, root, what, out)

        def prep():
            what, root = _broadcast_args(ctx, name, root_rank)
            w = as_array(x)
            dst, wo = _output(w, out, w.arr.shape, what)
            if dst is not w.arr:
                dst[...] = w.arr
            return what, root, w, dst, wo

        what, root, w, dst, wo = _prepare(ctx, KIND_BROADCAST, prep)
        st = lib.rr_broadcast(ctx.handle, _ptr(dst), dst.size, w.code, root)
        if st:
            _raise(ctx, st, what, dst.shape, process_set)
        return _finish(w, dst, wo, out)


def _broadcast_args(ctx: _state.Context, name: Any, root_rank: Any) -> tuple[str, int]:
    what = _label("broadcast", check_name(name))
    return what, root_of(root_rank, ctx, what)


def allgather(x: Any, name: str | None = None, process_set: ProcessSet | None = None) -> Any:
    """Concatenate every rank's ``x`` along the first dimension (which may differ by rank)."""
    ctx = context_of(process_set)
    with ctx.serial:
        ctx.claim()
        return _allgather(ctx, x, name, process_set)


def _allgather(ctx: _state.Context, x: Any, name: Any, process_set: ProcessSet | None) -> Any:
    if is_device_array(x):
        what = _prepare(ctx, KIND_ALLGATHER, lambda: _label("allgather", check_name(name)))
        return _device.allgather(ctx, x, what)

    def prep():
        what = _label("allgather", check_name(name))
        w = as_array(x)
        if w.arr.ndim == 0:
            raise ValueError(f"{what}: 0-d arrays cannot be gathered; reshape to (1,)")
        src = contiguous(w.arr)
        return what, w, src

    what, w, src = _prepare(ctx, KIND_ALLGATHER, prep)
    row = int(np.prod(src.shape[1:], dtype=np.int64))
    counts = ffi.new("size_t[]", ctx.size)
    st = lib.rr_allgather(ctx.handle, _ptr(src), src.size, ffi.NULL, w.code, row, counts)
    if st:
        _raise(ctx, st, what, src.shape[1:], process_set)
    if row:
        rows = sum(counts) // row
    else:
        # Zero-width rows: gather the row counts as objects to learn the first dimension.
        from .objects import allgather_object

        rows = sum(allgather_object(src.shape[0], process_set=process_set))
    # the peers learn of a failure here (out of memory) from the data phase's agreement
    res = _prepare(ctx, KIND_ALLGATHER, lambda: np.empty((rows,) + src.shape[1:], src.dtype))
    st = lib.rr_allgather(ctx.handle, _ptr(src), src.size, _ptr(res), w.code, row, counts)
    if st:
        _raise(ctx, st, what)
    return w.back(res)


def split_rows(rows: int, size: int) -> list[int]:
    """Rows each rank receives in reducescatter: as even as possible, extras first."""
    base, extra = divmod(rows, size)
    return [base + (1 if r < extra else 0) for r in range(size)]


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
        return _reducescatter(ctx, x, op, name, process_set, prescale_factor, postscale_factor)


def _reducescatter(ctx: _state.Context, x: Any, op: Any, name: Any,
                   process_set: ProcessSet | None, pre: float = 1.0, post_: float = 1.0) -> Any:
    if is_device_array(x):
        def dprep() -> str:
            what = _label("reducescatter", check_name(name))
            if pre != 1.0 or post_ != 1.0:
                raise ValueError(f"{what}: scale factors on device arrays are not supported")
            return what

        return _device.reducescatter(ctx, x, op, _prepare(ctx, KIND_REDUCESCATTER, dprep))

    def prep():
        what = _label("reducescatter", check_name(name))
        op_ = ReduceOp(op)
        w = as_array(x)
        if w.arr.ndim == 0:
            raise ValueError(f"{what}: 0-d arrays cannot be scattered; reshape to (1,)")
        src = contiguous(w.arr)
        rows = split_rows(src.shape[0], ctx.size)
        res = np.empty((rows[ctx.rank],) + src.shape[1:], src.dtype)
        return what, op_, w, src, rows, res

    what, op_, w, src, rows, res = _prepare(ctx, KIND_REDUCESCATTER, prep)
    row = int(np.prod(src.shape[1:], dtype=np.int64))
    counts = ffi.new("size_t[]", [r * row for r in rows])
    post, div = _scales(w.code, op_, ctx.size, float(pre), float(post_))
    st = lib.rr_reducescatter(
        ctx.handle, _ptr(src), src.size, _ptr(res), counts, w.code, c_op(op_), float(pre),
        post, div
    )
    if st:
        _raise(ctx, st, what, src.shape, process_set)
    return w.back(res)


def barrier(process_set: ProcessSet | None = None) -> None:
    """Block until every rank (of the process set) has called barrier()."""
    ctx = context_of(process_set)
    with ctx.serial:
        ctx.claim()
        st = lib.rr_barrier(ctx.handle)
        if st:
            _raise(ctx, st, "barrier")
