"""NumPy views of MXNet NDArrays (no copy) and NDArrays over NumPy results (no copy).

MXNet runs operators asynchronously: a view is taken only after the engine has finished
every pending write to the array (and, for a writable view, every pending read too)."""

from __future__ import annotations

import ctypes
from typing import Any

import mxnet as mx
import numpy as np
from mxnet.base import _LIB, check_call

from ..errors import UnsupportedError


def check_host(nd: Any, what: str) -> None:
    """UnsupportedError unless ``nd`` is a dense NDArray in CPU memory."""
    if not isinstance(nd, mx.nd.NDArray):
        raise TypeError(f"{what}: expected an mxnet NDArray, got {type(nd).__name__}")
    if nd.stype != "default":
        raise UnsupportedError(f"{what}: sparse ({nd.stype}) NDArrays are not supported")
    if nd.context.device_type not in ("cpu", "cpu_pinned", "cpu_shared"):
        raise UnsupportedError(f"{what}: ringred.mxnet takes NDArrays in CPU memory; this one "
                               f"is on {nd.context}")


def host_view(nd: Any, writable: bool = False, what: str = "ringred.mxnet") -> np.ndarray:
    """A NumPy array sharing ``nd``'s memory, once MXNet's engine is done with it.

    With ``writable`` the view may be written (the engine has also finished every read).
    The caller keeps ``nd`` alive while it uses the view."""
    check_host(nd, what)
    if writable:
        check_call(_LIB.MXNDArrayWaitToWrite(nd.handle))
    else:
        nd.wait_to_read()
    dt = np.dtype(nd.dtype)
    nbytes = int(np.prod(nd.shape, dtype=np.int64)) * dt.itemsize
    if nbytes == 0:
        return np.empty(nd.shape, dt)
    ptr = ctypes.c_void_p()
    check_call(_LIB.MXNDArrayGetData(nd.handle, ctypes.byref(ptr)))
    buf = (ctypes.c_char * nbytes).from_address(ptr.value)
    view = np.frombuffer(buf, dtype=dt).reshape(nd.shape)
    if not writable:
        view.flags.writeable = False
    return view


def to_ndarray(a: np.ndarray, like: Any) -> Any:
    """``a`` (a fresh result nobody else writes) as an NDArray on ``like``'s context: no
    copy on the CPU (DLPack)."""
    a = np.ascontiguousarray(a)
    if a.size == 0:
        return mx.nd.array(a, ctx=like.context, dtype=a.dtype)
    return mx.nd.from_dlpack(a.__dlpack__())
