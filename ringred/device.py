"""Collectives on GPU arrays (CuPy, torch.cuda, Numba, DLPack producers).

The collectives in ``ringred.collectives`` route device arrays here.  The C core stages
them through pinned host memory in pipelined segments (``csrc/device/device.c``) or, with a
CUDA-aware MPI, hands allreduce buffers to MPI directly.  Results are allocated by the
input's library on the input's device and come back as the input's type.  Nothing here
needs CUDA to import: the driver is loaded by the C core on the first device call.
See docs/gpu.md.
"""

from __future__ import annotations

from typing import Any

from ._args import check_scales, prepare, raise_status, scales, split_rows, total_rows
from ._arrays import (
    BACKEND_CUDA,
    BACKEND_FAKE,
    DeviceView,
    device_assign,
    device_back,
    device_empty,
    device_view,
    is_device_array,
)
from ._lib import (
    NULL,
    DType,
    ReqKind,
    cast,
    cstr,
    new,
    rr_device_allgather,
    rr_device_allreduce,
    rr_device_backend_available,
    rr_device_broadcast,
    rr_device_direct,
    rr_device_reducescatter,
    rr_device_transport,
    rr_engine_device_transport,
)
from .ops import ReduceOp, c_op

__all__ = ["backend_available", "cuda_aware", "is_device_array", "transport"]

_BACKENDS = {"cuda": BACKEND_CUDA, "fake": BACKEND_FAKE}


def backend_available(backend: str = "cuda") -> tuple[bool, str]:
    """(True, "") if the device backend ("cuda" or "fake") can run here, else (False, why).

    For "cuda" this loads the NVIDIA driver library (libcuda.so.1) and initializes it; it
    never needs the CUDA toolkit.
    """
    code = _BACKENDS.get(backend)
    if code is None:
        raise ValueError(f"unknown device backend {backend!r}; use 'cuda' or 'fake'")
    why = new("char[]", 512)
    st = rr_device_backend_available(code, why, 512)
    return st == 0, cstr(why)


def cuda_aware(backend: str = "cuda") -> bool:
    """True if device allreduce goes straight to a CUDA-aware MPI (RINGRED_CUDA_AWARE)."""
    from . import _state

    ctx = _state.current()
    out = new("int *")
    st = rr_device_direct(ctx.handle, _BACKENDS[backend], out)
    if st:
        raise_status(ctx, st, "cuda_aware")
    return bool(out[0])


def transport(engine: bool = False) -> tuple[str, str]:
    """(name, why) of the device transport in force for allreduces of the current context
    (``engine=True``: of its background engine, which has its own communicator).

    name is "ipc" (CUDA IPC between the ranks of one host, ringred's kernels), "staged"
    (through pinned host memory) or "undecided" (no device allreduce yet: the choice is made,
    collectively, by the first one); why says why IPC is not in force.  See
    RINGRED_DEVICE_TRANSPORT in docs/settings.md.
    """
    from . import _state

    ctx = _state.current()
    why = new("char[]", 512)
    if engine:
        eng = ctx.engine
        if eng is None:
            return "undecided", "the engine has not started"
        name = rr_engine_device_transport(eng.h, why, 512)
    else:
        name = rr_device_transport(ctx.handle, why, 512)
    return cstr(name), cstr(why)


def _p(v: DeviceView) -> Any:
    return cast("void *", v.ptr)


def output_for(v: DeviceView, out: Any, shape: tuple, what: str) -> tuple[DeviceView, Any]:
    """(where C writes the result, the caller's out when the result must be copied into it).

    A contiguous ``out`` is written in place; a non-contiguous one receives a copy.
    """
    if out is None:
        return device_empty(v, shape), None
    if not is_device_array(out):
        raise ValueError(f"{what}: out must be a GPU array like the input, not "
                         f"{type(out).__name__}")
    wo = device_view(out)
    if wo.shape != tuple(shape) or wo.code != v.code:
        raise ValueError(f"{what}: out has shape {wo.shape} and dtype {wo.dtype}, expected "
                         f"{tuple(shape)} and {v.dtype}")
    in_place = wo.obj is out or (wo.kind == "torch" and wo.ptr == out.data_ptr())
    return (wo, None) if in_place else (wo, out)


def result_of(v: DeviceView, res: DeviceView, out: Any, copy_into: Any) -> Any:
    """What a collective returns: ``res`` as the input's type, or ``out`` (filled)."""
    if copy_into is not None:
        device_assign(copy_into, res)
    return device_back(v, res) if out is None else out


def _scale_inplace(v: DeviceView, factor: float) -> bool:
    """res *= factor through the array's library; False where that is not possible."""
    if v.kind == "torch":
        v.obj.mul_(factor)
        return True
    if v.kind in ("cupy", "fake"):
        if v.kind == "cupy":
            v.obj *= factor
        else:
            v.obj[...] = v.obj.get() * factor
        return True
    return False


def allreduce(ctx: Any, x: Any, op: ReduceOp, what: str, prescale: float, postscale: float,
              out: Any) -> Any:
    """Device allreduce (called by ringred.allreduce for GPU arrays)."""

    def prep():
        op_ = ReduceOp(op)
        v = device_view(x)
        check_scales(v.code, v.dtype, prescale, postscale, what)
        dst, copy_into = output_for(v, out, v.shape, what)
        post, div = scales(v.code, op_, ctx.size, prescale, postscale)
        return op_, v, dst, copy_into, post, div

    op_, v, dst, copy_into, post, div = prepare(ctx, ReqKind.ALLREDUCE, prep)
    cop, late = c_op(op_), 1.0
    if (op_ is ReduceOp.Average and v.code in (DType.FLOAT32, DType.FLOAT64)
            and prescale == 1.0 and postscale == 1.0 and v.kind in ("torch", "cupy", "fake")
            and _direct(ctx, v.backend)):
        # CUDA-aware MPI sums on the device; the average's 1/size is applied by the library.
        post, late = 1.0, post
    st = rr_device_allreduce(ctx.handle, v.backend, v.device, v.stream, _p(v), _p(dst),
                             v.size, v.code, cop, float(prescale), float(post), div)
    if st:
        raise_status(ctx, st, what, v.shape)
    if late != 1.0:
        _scale_inplace(dst, late)
    return result_of(v, dst, out, copy_into)


def _direct(ctx: Any, backend: int) -> bool:
    out = new("int *")
    return rr_device_direct(ctx.handle, backend, out) == 0 and bool(out[0])


def broadcast(ctx: Any, x: Any, root_rank: int, what: str, out: Any) -> Any:
    """Device broadcast (called by ringred.broadcast for GPU arrays)."""

    def prep():
        v = device_view(x)
        dst, copy_into = output_for(v, out, v.shape, what)
        return v, dst, copy_into

    v, dst, copy_into = prepare(ctx, ReqKind.BROADCAST, prep)
    st = rr_device_broadcast(ctx.handle, v.backend, v.device, v.stream, _p(v), _p(dst),
                             v.size, v.code, int(root_rank))
    if st:
        raise_status(ctx, st, what, v.shape)
    return result_of(v, dst, out, copy_into)


def allgather(ctx: Any, x: Any, what: str) -> Any:
    """Device allgather (called by ringred.allgather for GPU arrays)."""

    def prep():
        v = device_view(x)
        if len(v.shape) == 0:
            raise ValueError(f"{what}: 0-d arrays cannot be gathered; reshape to (1,)")
        return v

    v = prepare(ctx, ReqKind.ALLGATHER, prep)
    row = 1
    for d in v.shape[1:]:
        row *= int(d)
    counts = new("size_t[]", ctx.size)
    st = rr_device_allgather(ctx.handle, v.backend, v.device, v.stream, _p(v), v.size, NULL,
                             v.code, row, counts)
    if st:
        raise_status(ctx, st, what, v.shape[1:])
    # zero-width rows: the element counts cannot tell the first dimension
    rows = sum(counts) // row if row else total_rows(ctx, v.shape[0], what)
    if rows * row == 0:  # every rank knows the total: all skip the data phase together
        return device_back(v, device_empty(v, (rows,) + tuple(v.shape[1:])))
    # the peers learn of a failure here (out of memory) from the data phase's agreement
    res = prepare(ctx, ReqKind.ALLGATHER, lambda: device_empty(v, (rows,) + tuple(v.shape[1:])))
    st = rr_device_allgather(ctx.handle, v.backend, v.device, v.stream, _p(v), v.size, _p(res),
                             v.code, row, counts)
    if st:
        raise_status(ctx, st, what)
    return device_back(v, res)


def reducescatter(ctx: Any, x: Any, op: ReduceOp, what: str) -> Any:
    """Device reducescatter (called by ringred.reducescatter for GPU arrays)."""

    def prep():
        op_ = ReduceOp(op)
        v = device_view(x)
        if len(v.shape) == 0:
            raise ValueError(f"{what}: 0-d arrays cannot be scattered; reshape to (1,)")
        return op_, v

    op_, v = prepare(ctx, ReqKind.REDUCESCATTER, prep)
    row = 1
    for d in v.shape[1:]:
        row *= int(d)
    rows = split_rows(v.shape[0], ctx.size)
    counts = new("size_t[]", [r * row for r in rows])
    res = device_empty(v, (rows[ctx.rank],) + tuple(v.shape[1:]))
    post, div = scales(v.code, op_, ctx.size, 1.0, 1.0)
    st = rr_device_reducescatter(ctx.handle, v.backend, v.device, v.stream, _p(v), v.size,
                                 _p(res), counts, v.code, c_op(op_), 1.0, post, div)
    if st:
        raise_status(ctx, st, what, v.shape)
    return device_back(v, res)
