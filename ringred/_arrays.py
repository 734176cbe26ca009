"""Array adapters: turn what the user passes (NumPy, buffer-protocol and
``__array_interface__`` objects, torch CPU tensors) into a contiguous NumPy view plus the
C dtype code, and turn results back into the caller's type."""

from __future__ import annotations

import array as _pyarray
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from ._lib import Backend, DType
from .errors import UnsupportedError

# bfloat16 for NumPy comes from ml_dtypes, whose import costs ~0.6 s: it is loaded the first
# time a bfloat16 is met (a NumPy array of that dtype, whose maker imported ml_dtypes already;
# a torch.bfloat16 tensor; bf16 compression), never by ``import ringred``.
_bf16: list[np.dtype | None] = []  # [] until looked up, then [dtype] or [None]


def bfloat16_dtype() -> np.dtype | None:
    """NumPy's bfloat16 dtype (ml_dtypes), or None without ml_dtypes; imported on first use."""
    if not _bf16:
        try:
            import ml_dtypes
        except ImportError:  # pragma: no cover - ml_dtypes is a dependency
            _bf16.append(None)
        else:
            dt = np.dtype(ml_dtypes.bfloat16)
            _CODES[dt] = DType.BFLOAT16
            _DL_DTYPES[(4, 16)] = dt
            _bf16.append(dt)
    return _bf16[0]


def _is_bf16(dt: np.dtype) -> bool:
    return dt.name == "bfloat16" and dt == bfloat16_dtype()


def __getattr__(name: str) -> Any:
    if name == "BFLOAT16":  # the former module constant
        return bfloat16_dtype()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

# NumPy dtype -> C code (bfloat16 is added when ml_dtypes is loaded).
_CODES: dict[np.dtype, int] = {
    np.dtype(np.uint8): DType.UINT8,
    np.dtype(np.int8): DType.INT8,
    np.dtype(np.int16): DType.INT16,
    np.dtype(np.int32): DType.INT32,
    np.dtype(np.int64): DType.INT64,
    np.dtype(np.float16): DType.FLOAT16,
    np.dtype(np.float32): DType.FLOAT32,
    np.dtype(np.float64): DType.FLOAT64,
}
SUPPORTED = ", ".join(sorted([str(d) for d in _CODES] + ["bfloat16"]))


def dtype_code(dt: np.dtype) -> int:
    """C dtype code of a NumPy dtype, or UnsupportedError."""
    code = _CODES.get(dt)
    if code is None and dt.name == "bfloat16" and bfloat16_dtype() == dt:
        code = DType.BFLOAT16
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
        bf16 = bfloat16_dtype()
        if bf16 is None:
            raise UnsupportedError("bfloat16 needs the ml_dtypes package")
        return x.view(t.int16).numpy().view(bf16)
    if x.dtype == t.bool:
        raise UnsupportedError(f"unsupported data type torch.bool; supported: {SUPPORTED}")
    return x.numpy()


def _numpy_to_torch(a: np.ndarray, like: Any) -> Any:
    t = _torch_module()
    if _is_bf16(a.dtype):
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
    if is_device_array(x):
        raise UnsupportedError(
            f"{type(x).__name__} is a GPU array: this operation needs a host array "
            "(the collectives take GPU arrays through ringred.device)"
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


def check_writable(a: np.ndarray, what: str = "output") -> None:
    """Raise ValueError for a read-only output."""
    if not a.flags.writeable:
        raise ValueError(f"{what} is read-only")


# ---------------------------------------------------------------- device (GPU) arrays
# Recognized: torch.cuda tensors, __cuda_array_interface__ (CuPy, Numba, ...), DLPack
# (__dlpack__ / __dlpack_device__ on a CUDA device), and the fake device's arrays
# (register_fake_array, called by ringred.testing).
# Nothing here imports a GPU library: the array's own module is found in sys.modules.

BACKEND_CUDA, BACKEND_FAKE = Backend.CUDA, Backend.FAKE
_DL_CUDA, _DL_CUDA_MANAGED = 2, 13  # DLPack device types
# DLPack (type code, bits) -> NumPy dtype
_DL_DTYPES: dict[tuple[int, int], np.dtype] = {
    (0, 8): np.dtype(np.int8), (0, 16): np.dtype(np.int16), (0, 32): np.dtype(np.int32),
    (0, 64): np.dtype(np.int64), (1, 8): np.dtype(np.uint8), (2, 16): np.dtype(np.float16),
    (2, 32): np.dtype(np.float32), (2, 64): np.dtype(np.float64),
}


class DeviceView:
    """A device array as the C core sees it: address, shape, dtype code, device, stream.

    ``obj`` is the C-contiguous array the address belongs to (the input itself, or a
    contiguous copy made by its library); ``kind`` says which library made it ("torch",
    "cupy", "numba", "fake", "cai" for another ``__cuda_array_interface__`` producer,
    "dlpack"); ``keep`` holds what must stay alive while C uses the address.
    """

    __slots__ = ("obj", "ptr", "shape", "dtype", "code", "device", "stream", "backend", "kind",
                 "keep")

    def __init__(self, obj: Any, ptr: int, shape: tuple, dtype: Any, code: int, device: int,
                 stream: int, backend: int, kind: str, keep: Any = None):
        self.obj, self.ptr, self.shape, self.dtype, self.code = obj, ptr, shape, dtype, code
        self.device, self.stream, self.backend, self.kind, self.keep = (
            device, stream, backend, kind, keep)

    @property
    def size(self) -> int:
        """Number of elements."""
        n = 1
        for d in self.shape:
            n *= int(d)
        return n


# Extra device adapters, tried before the built-in ones: (predicate, viewer) pairs.
# ringred.testing registers one that sends torch CPU tensors through the device path.
_EXTRA_DEVICE: list[tuple[Callable[[Any], bool], Callable[[Any], DeviceView]]] = []


def register_device_adapter(predicate: Callable[[Any], bool],
                            viewer: Callable[[Any], DeviceView]) -> None:
    """Treat objects for which ``predicate`` is true as device arrays seen by ``viewer``."""
    _EXTRA_DEVICE.insert(0, (predicate, viewer))


def unregister_device_adapter(predicate: Callable[[Any], bool]) -> None:
    """Undo ``register_device_adapter`` for ``predicate``."""
    _EXTRA_DEVICE[:] = [a for a in _EXTRA_DEVICE if a[0] is not predicate]


def _extra_view(x: Any) -> DeviceView | None:
    for pred, view in _EXTRA_DEVICE:
        if pred(x):
            return view(x)
    return None


def _fake_env() -> bool:
    import os

    return os.environ.get("RINGRED_DEVICE_BACKEND", "").lower() == "fake"


def is_device_array(x: Any) -> bool:
    """True for a GPU array (or a fake one); never imports a GPU library."""
    if _EXTRA_DEVICE and any(pred(x) for pred, _ in _EXTRA_DEVICE):
        return True
    if is_torch(x):
        return x.device.type == "cuda"
    t = type(x)
    if hasattr(t, "__cuda_array_interface__"):
        return True
    if hasattr(t, "__dlpack_device__") and not isinstance(x, np.ndarray | np.generic):
        try:
            dev_type = int(x.__dlpack_device__()[0])
        except Exception:
            return False
        return dev_type in (_DL_CUDA, _DL_CUDA_MANAGED)
    return False


# The fake device's array type: ringred.testing registers its FakeDeviceArray, with which
# the fake backend's results are made.
_FAKE_ARRAY: list[type] = []


def register_fake_array(cls: type) -> None:
    """Make ``cls`` the fake device backend's array type (kind "fake")."""
    _FAKE_ARRAY[:] = [cls]


def _fake_array() -> type:
    if not _FAKE_ARRAY:
        raise UnsupportedError("the fake device backend makes its results with "
                               "ringred.testing.FakeDeviceArray: import ringred.testing")
    return _FAKE_ARRAY[0]


def _library(x: Any) -> str:
    if _FAKE_ARRAY and isinstance(x, _FAKE_ARRAY[0]):
        return "fake"
    root = type(x).__module__.split(".")[0]
    return root if root in ("cupy", "numba") else "cai"


_TORCH_CODES: dict[Any, int] = {}


def _torch_code(dt: Any) -> int:
    if not _TORCH_CODES:
        t = _torch_module()
        _TORCH_CODES.update({getattr(t, c.name.lower()): c for c in DType})
    code = _TORCH_CODES.get(dt)
    if code is None:
        raise UnsupportedError(f"unsupported data type {dt}; supported: {SUPPORTED}")
    return code


def _torch_view(x: Any) -> DeviceView:
    t = _torch_module()
    x = x.detach()
    if not x.is_contiguous():
        x = x.contiguous()
    stream = int(t.cuda.current_stream(x.device).cuda_stream)
    return DeviceView(x, int(x.data_ptr()), tuple(x.shape), x.dtype, _torch_code(x.dtype),
                      int(x.device.index or 0), stream, BACKEND_CUDA, "torch")


def _c_contiguous(shape: tuple, strides: tuple | None, itemsize: int) -> bool:
    if strides is None:
        return True
    expect = itemsize
    for dim, st in zip(reversed(shape), reversed(strides), strict=True):
        if dim != 1 and st != expect:
            return False
        expect *= dim
    return True


def _cupy_view(x: Any) -> DeviceView:
    """A CuPy array seen through its own attributes: reading ``__cuda_array_interface__``
    would synchronize the current stream (CuPy's default for CAI export), exactly the wait
    on the host the stream-ordered device path avoids."""
    if not x.flags.c_contiguous:
        x = sys.modules["cupy"].ascontiguousarray(x)
    dt = np.dtype(x.dtype)
    stream = int(sys.modules["cupy"].cuda.get_current_stream().ptr)
    return DeviceView(x, int(x.data.ptr), tuple(x.shape), dt, dtype_code(dt), int(x.device.id),
                      stream, BACKEND_FAKE if _fake_env() else BACKEND_CUDA, "cupy")


def _cai_view(x: Any) -> DeviceView:
    kind = _library(x)
    if kind == "cupy":
        return _cupy_view(x)
    cai = x.__cuda_array_interface__
    shape = tuple(int(d) for d in cai["shape"])
    # CuPy and the fake array know their dtype (bfloat16 has no standard typestr).
    dt = np.dtype(x.dtype) if kind in ("cupy", "fake") else np.dtype(cai["typestr"])
    if cai.get("mask") is not None:
        raise UnsupportedError("masked __cuda_array_interface__ arrays are not supported")
    if not _c_contiguous(shape, cai.get("strides"), dt.itemsize):
        if kind == "cupy":
            return _cai_view(sys.modules["cupy"].ascontiguousarray(x))
        if kind == "fake":
            return _cai_view(x.copy())
        raise UnsupportedError(
            f"non-contiguous {type(x).__name__} array: make it contiguous first")
    stream = cai.get("stream")
    backend = BACKEND_FAKE if kind == "fake" or _fake_env() else BACKEND_CUDA
    if kind == "cupy":
        # CuPy's current stream is the producer (also where CAI v2 exports no stream).
        stream = int(sys.modules["cupy"].cuda.get_current_stream().ptr)
        device = int(x.device.id)
    elif kind == "fake":
        device = 0
    else:
        device = _pointer_device(int(cai["data"][0]), backend)
    return DeviceView(x, int(cai["data"][0]), shape, dt, dtype_code(dt), device,
                      int(stream) if stream is not None else 0, backend, kind)


def _pointer_device(ptr: int, backend: int) -> int:
    """Device holding ptr: asked through CuPy where it is loaded, else the current one."""
    cupy = sys.modules.get("cupy")
    if backend == BACKEND_CUDA and cupy is not None and ptr:
        try:
            return int(cupy.cuda.runtime.pointerGetAttributes(ptr).device)
        except Exception:
            pass
    numba_cuda = sys.modules.get("numba.cuda")
    if backend == BACKEND_CUDA and numba_cuda is not None:
        try:
            return int(numba_cuda.get_current_device().id)
        except Exception:
            pass
    return 0


def _dlpack_view(x: Any) -> DeviceView:
    import ctypes

    class DLDevice(ctypes.Structure):
        _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]

    class DLDataType(ctypes.Structure):
        _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8),
                    ("lanes", ctypes.c_uint16)]

    class DLTensor(ctypes.Structure):
        _fields_ = [("data", ctypes.c_void_p), ("device", DLDevice), ("ndim", ctypes.c_int32),
                    ("dtype", DLDataType), ("shape", ctypes.POINTER(ctypes.c_int64)),
                    ("strides", ctypes.POINTER(ctypes.c_int64)),
                    ("byte_offset", ctypes.c_uint64)]

    dev_type, dev_id = x.__dlpack_device__()
    try:  # data ready with respect to the legacy default stream (stream 1)
        cap = x.__dlpack__(stream=1)
    except (TypeError, BufferError, ValueError):
        cap = x.__dlpack__()
    get = ctypes.pythonapi.PyCapsule_GetPointer
    get.restype = ctypes.c_void_p
    get.argtypes = [ctypes.py_object, ctypes.c_char_p]
    t = DLTensor.from_address(get(cap, b"dltensor"))  # DLManagedTensor begins with it
    if (t.dtype.code, t.dtype.bits) == (4, 16):
        bfloat16_dtype()  # registers it in _DL_DTYPES
    if t.dtype.lanes != 1 or (t.dtype.code, t.dtype.bits) not in _DL_DTYPES:
        raise UnsupportedError(f"unsupported DLPack data type (code {t.dtype.code}, "
                               f"{t.dtype.bits} bits, {t.dtype.lanes} lanes)")
    dt = _DL_DTYPES[(t.dtype.code, t.dtype.bits)]
    shape = tuple(int(t.shape[i]) for i in range(t.ndim))
    strides = (None if not t.strides else
               tuple(int(t.strides[i]) * dt.itemsize for i in range(t.ndim)))
    if not _c_contiguous(shape, strides, dt.itemsize):
        raise UnsupportedError(f"non-contiguous {type(x).__name__} array: make it contiguous "
                               "first")
    backend = BACKEND_FAKE if _fake_env() else BACKEND_CUDA
    ptr = int(t.data or 0) + int(t.byte_offset)
    return DeviceView(x, ptr, shape, dt, dtype_code(dt), int(dev_id), 1, backend, "dlpack",
                      keep=cap)


def device_view(x: Any) -> DeviceView:
    """The C view of a device array (a contiguous copy through its library if needed)."""
    if _EXTRA_DEVICE:
        v = _extra_view(x)
        if v is not None:
            return v
    if is_torch(x):
        return _torch_view(x)
    if hasattr(type(x), "__cuda_array_interface__"):
        return _cai_view(x)
    return _dlpack_view(x)


def device_empty(like: DeviceView, shape: tuple) -> DeviceView:
    """A new array of ``like``'s dtype and device, allocated by ``like``'s library."""
    if like.kind == "torch":
        t = _torch_module()
        return device_view(t.empty(shape, dtype=like.dtype, device=like.obj.device))
    if like.kind == "fake" or (like.backend == BACKEND_FAKE and like.kind in ("cai", "dlpack")):
        return _cai_view(_fake_array().empty(shape, like.dtype))
    if like.kind == "numba":
        nc = sys.modules["numba.cuda"]
        return _cai_view(nc.device_array(shape, like.dtype))
    cupy = sys.modules.get("cupy")
    if cupy is None:
        try:
            import cupy
        except ImportError:
            raise UnsupportedError(
                f"results for {type(like.obj).__name__} arrays are made with CuPy: install "
                "cupy-cuda12x or cupy-cuda13x (ringred[cuda12] / ringred[cuda13])") from None
    with cupy.cuda.Device(like.device):
        return _cai_view(cupy.empty(shape, like.dtype))


def device_back(like: DeviceView, res: DeviceView) -> Any:
    """``res`` in the type of the input ``like``."""
    if like.kind == "dlpack" and res.kind != "fake":
        mod = sys.modules.get(type(like.obj).__module__.split(".")[0])
        convert = getattr(mod, "from_dlpack", None)
        if convert is not None:
            return convert(res.obj)
    return res.obj


_NUMPY_OF_CODE: dict[int, np.dtype] = {c: dt for dt, c in _CODES.items()}


def numpy_dtype(v: DeviceView) -> np.dtype:
    """The NumPy dtype with the device array's element layout."""
    dt = _NUMPY_OF_CODE.get(v.code)
    if dt is None:  # bfloat16: added to _CODES only once ml_dtypes is loaded
        dt = bfloat16_dtype()
        if dt is None or _CODES.get(dt) != v.code:
            raise UnsupportedError(f"no NumPy dtype for data type code {v.code} (bfloat16 "
                                   "needs the ml_dtypes package)")
    return dt


def device_from_host(like: DeviceView, host: np.ndarray) -> Any:
    """A device copy of ``host`` made by ``like``'s library on ``like``'s device, returned as
    ``like``'s type (allgather results, which the engine gathers in host memory)."""
    if like.kind == "torch":
        t = _torch_module()
        h = t.from_numpy(host.view(np.int16)).view(t.bfloat16) if _is_bf16(host.dtype) \
            else t.from_numpy(host)
        return h.to(like.obj.device)
    if like.kind == "fake":
        return type(like.obj).from_host(host)
    if like.kind == "numba":
        return sys.modules["numba.cuda"].to_device(host)
    cupy = sys.modules.get("cupy")
    if cupy is None:
        if like.backend == BACKEND_FAKE:
            return _fake_array().from_host(host)
        import cupy
    with cupy.cuda.Device(like.device):
        res = _cai_view(cupy.asarray(host))
    return device_back(like, res)


def device_assign(dst: Any, src: DeviceView) -> None:
    """dst[...] = src through the arrays' library (for non-contiguous outputs)."""
    if is_torch(dst):
        dst.copy_(src.obj)
    elif _library(dst) in ("cupy", "fake"):
        dst[...] = src.obj
    else:
        raise UnsupportedError(f"non-contiguous output of type {type(dst).__name__}")
