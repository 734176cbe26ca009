"""Asynchronous collectives on GPU arrays: device requests for the background engine.

``ringred.asyncapi`` routes device arrays (CuPy, torch.cuda, ``__cuda_array_interface__`` /
DLPack producers) here.  A device request carries the array's backend, device and producer
stream; the engine records a ready event on that stream at submission, reduces the tensor on
the device (fused with other ready device tensors through a device fusion buffer) and
completes the request once the device is done with its buffers, so that ``wait()`` returns
results any stream may use at once.  Nothing here synchronizes the device.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import device as _device
from ._args import check_scales, scales, split_rows
from ._arrays import (
    DeviceView,
    device_assign,
    device_back,
    device_empty,
    device_from_host,
    device_view,
    numpy_dtype,
)
from ._engine import Engine, Handle
from ._lib import MAX_DIMS, NULL, ReqKind, cast, cbuf, new
from .ops import C_OP, ReduceOp

_MAX_DIMS = MAX_DIMS


def shape_field(shape: tuple) -> list[int]:
    """The shape as the C request carries it (at most RR_MAX_DIMS dimensions)."""
    s = [int(d) for d in shape]
    if len(s) > _MAX_DIMS:
        s = s[: _MAX_DIMS - 1] + [int(np.prod(s[_MAX_DIMS - 1:], dtype=np.int64))]
    return s


def where(v: DeviceView) -> dict:
    """The request fields that place a tensor on its device and producer stream."""
    return {"backend": v.backend, "device": v.device, "stream": v.stream}


def _p(v: DeviceView) -> Any:
    return cast("void *", v.ptr)


def allreduce(eng: Engine, size: int, x: Any, op: ReduceOp, name: str, pre: float,
              post: float, out: Any, fields: Any) -> Handle:
    """Submit a device allreduce; ``fields(...)`` builds the request dict."""
    what = f"allreduce '{name}'"
    v = device_view(x)
    check_scales(v.code, v.dtype, pre, post, what)
    if out is x and (v.obj is x or (v.kind == "torch" and x.data_ptr() == v.ptr)):
        dst, copy_into = v, None  # in place (the DistributedOptimizer's pattern)
    else:
        dst, copy_into = _device.output_for(v, out, v.shape, what)
    post_, div = scales(v.code, op, size, pre, post)
    shape = v.shape if len(v.shape) <= _MAX_DIMS else shape_field(v.shape)
    if out is not None and copy_into is None:
        finish = None  # the result is `out` itself: Handle returns keep[1]
        keep: tuple = (v, out, x, dst)
    else:
        keep = (x, v, dst, out, copy_into)

        def finish() -> Any:
            return _device.result_of(v, dst, out, copy_into)
    return eng.allreduce_device(name, keep, v.ptr, dst.ptr, v.size, v.code, C_OP[op],
                                float(pre), float(post_), div, shape, v.backend, v.device,
                                v.stream, finish)


def broadcast(eng: Engine, x: Any, root: int, name: str, out: Any, fields: Any) -> Handle:
    """Submit a device broadcast (into ``out`` or a new array, from the root's ``x``)."""
    what = f"broadcast '{name}'"
    v = device_view(x)
    dst, copy_into = _device.output_for(v, out, v.shape, what)
    if dst.ptr != v.ptr:
        device_assign(dst.obj, v)  # on the producer stream, before the ready event
    nm = new("char[]", name.encode())
    req = new("rr_request *", fields(
        nm, ReqKind.BROADCAST, NULL, _p(dst), dst.size, v.code, 0, 1.0, 1.0, 1,
        int(root), shape_field(dst.shape), **where(v)))
    return eng.submit(req, 1, name, (x, v, dst, out, copy_into, nm),
                      lambda: _device.result_of(v, dst, out, copy_into))


def allgather(eng: Engine, x: Any, name: str, fields: Any) -> Handle:
    """Submit a device allgather; the result is made on ``x``'s device at ``wait()``."""
    v = device_view(x)
    if len(v.shape) == 0:
        raise ValueError(f"allgather '{name}': 0-d arrays cannot be gathered; reshape to (1,)")
    nm = new("char[]", name.encode())
    req = new("rr_request *", fields(
        nm, ReqKind.ALLGATHER, _p(v), NULL, v.size, v.code, 0, 1.0, 1.0, 1, 0,
        shape_field(v.shape), **where(v)))
    holder: list[Handle] = []

    def finish() -> Any:
        rows, copy = eng.gathered(holder[0])
        host = np.empty((sum(rows),) + tuple(v.shape[1:]), numpy_dtype(v))
        copy(cbuf(host), host.nbytes)
        return device_from_host(v, host)

    h = eng.submit(req, 1, name, (x, v, nm), finish)
    holder.append(h)
    return h


def reducescatter(eng: Engine, size: int, rank: int, x: Any, op: ReduceOp, name: str,
                  fields: Any) -> Handle:
    """Submit a device reducescatter (this rank's rows of the reduction)."""
    v = device_view(x)
    if len(v.shape) == 0:
        raise ValueError(f"reducescatter '{name}': 0-d arrays cannot be scattered")
    rows = split_rows(v.shape[0], size)
    res = device_empty(v, (rows[rank],) + tuple(v.shape[1:]))
    post, div = scales(v.code, op, size, 1.0, 1.0)
    nm = new("char[]", name.encode())
    req = new("rr_request *", fields(
        nm, ReqKind.REDUCESCATTER, _p(v), _p(res), v.size, v.code, C_OP[op], 1.0,
        float(post), div, 0, shape_field(v.shape), **where(v)))
    return eng.submit(req, 1, name, (x, v, res, nm), lambda: device_back(v, res))


def group_member(x: Any, op: ReduceOp, size: int, pre: float, post: float, what: str,
                 fields_for: Any) -> tuple[dict, tuple, Any]:
    """A device member of a grouped allreduce: (request fields, what to keep alive,
    a function returning its result)."""
    v = device_view(x)
    check_scales(v.code, v.dtype, pre, post, what)
    dst = device_empty(v, v.shape)
    post_, div = scales(v.code, op, size, pre, post)
    f = fields_for(ReqKind.ALLREDUCE, _p(v), _p(dst), v.size, v.code, C_OP[op],
                   float(pre), float(post_), div, 0, shape_field(v.shape), **where(v))
    return f, (x, v, dst), lambda: device_back(v, dst)
