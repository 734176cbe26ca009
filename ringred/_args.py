"""Argument checks and preparation shared by the front ends: the synchronous collectives
(collectives.py), the asynchronous ones (asyncapi.py, _async_device.py) and the device ones
(device.py).  Nothing here runs a collective except ``total_rows``."""

from __future__ import annotations

import operator
from typing import Any

import numpy as np

from ._arrays import _CODES, Wrapped, as_array, check_writable
from ._lib import (
    FLOAT_DTYPES,
    NULL,
    DType,
    cbuf,
    from_buffer,
    make_error,
    new,
    rr_allgather,
    rr_poison,
)
from .errors import MismatchError
from .ops import C_OP, ReduceOp

# Fast-path tables: native dtypes the C kernels take directly (bfloat16 goes the general
# way), and op -> (C op, is Average).
FAST_CODES = {dt: int(c) for dt, c in _CODES.items() if c != DType.BFLOAT16}
FAST_OPS = {op: (C_OP[op], op is ReduceOp.Average) for op in ReduceOp}


def fast_allreduce_args(ctx: Any, x: Any, op: Any, pre: float, post: float,
                        out: Any) -> tuple[int, int, float, int, np.ndarray] | None:
    """(dtype code, C op, postscale, divisor, output array) when ``x`` and ``out`` can go
    straight to C: C-contiguous NumPy arrays of a native dtype, a writable ``out`` of the same
    shape and dtype (or none: a new array), no scale factors.  None sends the call down the
    general path, which also produces every error message.  About 1 us of Python."""
    if type(x) is not np.ndarray or pre != 1.0 or post != 1.0:
        return None
    code = FAST_CODES.get(x.dtype)
    fop = FAST_OPS.get(op)
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
    if code in FLOAT_DTYPES:
        return code, fop[0], 1.0 / ctx.size, 1, res
    return code, fop[0], 1.0, ctx.size, res


def prepare(ctx: Any, kind: int, fn):
    """Run local argument checks; if they fail, tell the other ranks before raising (they
    get a MismatchError "... rejected locally on rank r").  ``kind``: a ReqKind."""
    try:
        return fn()
    except Exception:
        rr_poison(ctx.handle, kind)
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


def root_of(root_rank: Any, ctx: Any, what: str) -> int:
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


def label(kind: str, name: Any) -> str:
    """How messages name a call: ``kind 'name'``, or ``kind`` for an unnamed one."""
    return f"{kind} '{name}'" if name else kind


def raise_status(ctx: Any, st: int, what: str, shape: tuple | None = None) -> None:
    """Raise the exception for C status ``st``.  A mismatch names this rank's shape (the C
    message lists every rank's element count); no further collective runs, so every rank
    leaves the failed call in step, whatever the others had called."""
    err = make_error(st, ctx.handle, what)
    if isinstance(err, MismatchError) and shape is not None and "rejected locally" not in str(err):
        err = MismatchError(f"{err} (shape on rank {ctx.rank}: {[int(d) for d in shape]})")
    raise err


def host_output(w: Wrapped, out: Any, shape: tuple, what: str) -> tuple[np.ndarray, Any]:
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


def host_finish(w: Wrapped, res: np.ndarray, wo: Any, out: Any) -> Any:
    """What a host collective returns: ``res`` as the input's type, or ``out`` (filled)."""
    if wo is None:
        return w.back(res)
    if res is not wo.arr:
        wo.arr[...] = res
    return out


def check_scales(code: int, dtype: Any, pre: float, post: float, what: str) -> None:
    """Scale factors on device data need a floating-point dtype: ValueError otherwise (host
    data of integer types is scaled like Horovod: in float64, truncated toward zero)."""
    if code not in FLOAT_DTYPES and (pre != 1.0 or post != 1.0):
        raise ValueError(f"{what}: scale factors need a floating-point dtype, not {dtype}")


def scales(code: int, op: ReduceOp, size: int, pre: float, post: float) -> tuple[float, int]:
    """(postscale, integer divisor) for ``op``."""
    if op is ReduceOp.Average:
        if code in FLOAT_DTYPES:
            return post / size, 1
        return post, size
    return post, 1


def split_rows(rows: int, size: int) -> list[int]:
    """Rows each rank receives in reducescatter: as even as possible, extras first."""
    base, extra = divmod(rows, size)
    return [base + (1 if r < extra else 0) for r in range(size)]


def total_rows(ctx: Any, rows: int, what: str) -> int:
    """The sum over the ranks of ``rows`` (an allgather of one int64 per rank): the first
    dimension of an allgather of zero-width rows, which the element counts cannot tell."""
    src = np.array([rows], np.int64)
    counts = new("size_t[]", ctx.size)
    st = rr_allgather(ctx.handle, from_buffer(src), 1, NULL, DType.INT64, 1, counts)
    if st:
        raise_status(ctx, st, what)
    res = np.empty(sum(counts), np.int64)
    st = rr_allgather(ctx.handle, from_buffer(src), 1, cbuf(res), DType.INT64, 1, counts)
    if st:
        raise_status(ctx, st, what)
    return int(res.sum())
