"""Array adapters: turn what the user passes (NumPy, buffer-protocol and
``__array_interface__`` objects, torch CPU tensors) into a contiguous NumPy view plus the
C dtype code, and turn results back into the caller's type."""

from __future__ import annotations

import array as _pyarray
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from .errors import UnsupportedError

try:  # bfloat16 for NumPy
    import ml_dtypes

    BFLOAT16: np.dtype | None = np.dtype(ml_dtypes.bfloat16)
except ImportError:  # pragma: no cover - ml_dtypes is a dependency
    BFLOAT16 = None

# NumPy dtype -> C code (csrc/ringred.h rr_dtype).
_CODES: dict[np.dtype, int] = {
    np.dtype(np.uint8): 0,
    np.dtype(np.int8): 1,
    np.dtype(np.int16): 2,
    np.dtype(np.int32): 3,
    np.dtype(np.int64): 4,
    np.dtype(np.float16): 5,
    np.dtype(np.float32): 7,
    np.dtype(np.float64): 8,
}
if BFLOAT16 is not None:
    _CODES[BFLOAT16] = 6
FLOAT_CODES = frozenset({5, 6, 7, 8})
SUPPORTED = ", ".join(sorted(str(d) for d in _CODES))


def dtype_code(dt: np.dtype) -> int:
    """C dtype code of a NumPy dtype, or UnsupportedError."""
    code = _CODES.get(dt)
    if code is None:
        # Byte order variants of the same type (e.g. '>f4') are not native: refuse clearly.
        raise UnsupportedError(f"unsupported data type {dt}; supported: {SUPPORTED}")
    return code


def _torch_module() -> Any:
    return sys.modules.get("torch")


def is_torch(x: Any) -> bool:
    """True for a torch.Tensor (without importing torch)."""
    t = _torch_module()
    return t is not None and isinstance(x, t.Tensor)


def _torch_to_numpy(x: Any) -> np.ndarray:
    t = _torch_module()
    if x.device.type != "cpu":
        raise UnsupportedError(
            f"tensor on device {x.device}: only CPU tensors are supported on this path"
        )
    x = x.detach()
    if x.dtype == t.bfloat16:
        if BFLOAT16 is None:
            raise UnsupportedError("bfloat16 needs the ml_dtypes package")
        return x.view(t.int16).numpy().view(BFLOAT16)
    if x.dtype == t.bool:
        raise UnsupportedError(f"unsupported data type torch.bool; supported: {SUPPORTED}")
    return x.numpy()


def _numpy_to_torch(a: np.ndarray, like: Any) -> Any:
    t = _torch_module()
    if BFLOAT16 is not None and a.dtype == BFLOAT16:
        return t.from_numpy(a.view(np.int16)).view(t.bfloat16)
    return t.from_numpy(a)


class Wrapped:
    """A user object seen as a NumPy array (``arr``), with a way back to its type."""

    __slots__ = ("arr", "code", "back", "source", "contiguous")

    def __init__(self, arr: np.ndarray, code: int, back: Callable[[np.ndarray], Any], source: Any):
        self.arr = arr
        self.code = code
        self.back = back
        self.source = source
        self.contiguous = arr.flags.c_contiguous


def _identity(a: np.ndarray) -> np.ndarray:
    return a


def as_array(x: Any) -> Wrapped:
    """View ``x`` as a NumPy array (no copy where possible) and remember its type."""
    if type(x) is np.ndarray:
        return Wrapped(x, dtype_code(x.dtype), _identity, x)
    if is_torch(x):
        a = _torch_to_numpy(x)
        return Wrapped(a, dtype_code(a.dtype), lambda r: _numpy_to_torch(r, x), x)
    if isinstance(x, np.ndarray):  # subclasses
        return Wrapped(x, dtype_code(x.dtype), lambda r: r.view(type(x)), x)
    if isinstance(x, np.generic):
        a = np.asarray(x)
        return Wrapped(a, dtype_code(a.dtype), lambda r: r[()], x)
    if hasattr(x, "__cuda_array_interface__"):
        raise UnsupportedError(
            "GPU arrays are not supported by this build path; pass a host array"
        )
    if hasattr(x, "__array_interface__") or hasattr(x, "__array__"):
        a = np.asarray(x)
        return Wrapped(a, dtype_code(a.dtype), _identity, x)
    try:
        mv = memoryview(x)
    except TypeError:
        raise UnsupportedError(
            f"cannot use {type(x).__name__} as an array: pass a NumPy array, a torch CPU "
            "tensor, or an object with the buffer protocol or __array_interface__"
        ) from None
    a = np.asarray(mv)
    if isinstance(x, _pyarray.array):
        tc = x.typecode
        return Wrapped(a, dtype_code(a.dtype), lambda r: _pyarray.array(tc, r.tobytes()), x)
    if isinstance(x, bytes | bytearray):
        kind = type(x)
        return Wrapped(a, dtype_code(a.dtype), lambda r: kind(r.tobytes()), x)
    return Wrapped(a, dtype_code(a.dtype), lambda r: memoryview(r), x)


def contiguous(a: np.ndarray) -> np.ndarray:
    """C-contiguous version of ``a`` (a copy only if needed)."""
    return a if a.flags.c_contiguous else np.ascontiguousarray(a)


def cbuf(a: np.ndarray, ffi: Any) -> Any:
    """A cffi view of a C-contiguous array's memory (no copy)."""
    try:
        return ffi.from_buffer(a)
    except (ValueError, TypeError, BufferError):
        # dtypes the buffer protocol cannot describe (ml_dtypes' bfloat16): same bytes.
        return ffi.from_buffer(a.view(np.uint8 if a.itemsize == 1 else f"u{a.itemsize}"))


def check_writable(a: np.ndarray, what: str = "output") -> None:
    """Raise ValueError for a read-only output."""
    if not a.flags.writeable:
        raise ValueError(f"{what} is read-only")
