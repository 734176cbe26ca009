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


def host_view(nd: Any, writable: bool = False, what: str = "ringred.mxnet",
              wait: bool = True) -> np.ndarray:
    """A NumPy array sharing ``nd``'s memory, once MXNet's engine is done with it.

    With ``writable`` the view may be written (the engine has also finished every read).
    ``wait=False`` skips the wait, for a caller that has just run ``mx.nd.waitall()``."""
    check_host(nd, what)
    if not wait:
        pass
    elif writable:
        check_call(_LIB.MXNDArrayWaitToWrite(nd.handle))
    else:
        nd.wait_to_read()
    dt = np.dtype(nd.dtype)
    shape = tuple(nd.shape)
    if int(np.prod(shape, dtype=np.int64)) == 0:
        return np.empty(shape, dt)
    ptr = ctypes.c_void_p()
    check_call(_LIB.MXNDArrayGetData(nd.handle, ctypes.byref(ptr)))
    return np.asarray(_Memory(nd, ptr.value, shape, dt, writable))


class _Memory:
    """An NDArray's memory seen through ``__array_interface__``; the view made from it keeps
    the NDArray alive."""

    __slots__ = ("__array_interface__", "owner")

    def __init__(self, owner: Any, ptr: int, shape: tuple, dt: np.dtype, writable: bool):
        self.owner = owner
        self.__array_interface__ = {"data": (ptr, not writable), "shape": shape,
                                    "typestr": dt.str, "version": 3}


def to_ndarray(a: np.ndarray, like: Any) -> Any:
    """``a`` (a fresh result nobody else writes) as an NDArray on ``like``'s context: no
    copy on the CPU (DLPack)."""
    a = np.ascontiguousarray(a)
    if a.size == 0:
        return mx.nd.array(a, ctx=like.context, dtype=a.dtype)
    return mx.nd.from_dlpack(a.__dlpack__())
