"""Test helpers: a fake GPU array and a fake producer stream, so that the device paths run
without a GPU."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._arrays import (
    BACKEND_FAKE,
    DeviceView,
    _torch_code,
    is_torch,
    register_device_adapter,
    register_fake_array,
    unregister_device_adapter,
)
from ._lib import (
    check,
    new,
    rr_test_fake_stream_copy,
    rr_test_fake_stream_create,
    rr_test_fake_stream_destroy,
    rr_test_fake_stream_sleep,
    rr_test_fake_stream_sync,
)

# csrc/device/device_fake.c: "device" addresses are host addresses with this bit set, so that a
# host dereference of one faults instead of silently reading the right bytes.
FAKE_TAG = 1 << 62


class FakeStream:
    """A stream of the fake device backend: a worker thread running queued work in order.

    Plays the producer stream of an array library (a CUDA stream whose kernels write the
    array): ``sleep`` queues a pause, ``copy`` an asynchronous write of a FakeDeviceArray.
    An array carrying the stream (``FakeDeviceArray.from_host(a, stream=s)``) exports it in
    ``__cuda_array_interface__``, so ringred's collectives must order their reads after the
    work queued on it.  Close it (or use it as a context manager) when done.
    """

    def __init__(self) -> None:
        out = new("uintptr_t *")
        check(rr_test_fake_stream_create(out), what="FakeStream")
        self.handle: int = int(out[0])
        self._keep: list[Any] = []  # sources of queued copies, alive until synchronized

    def _live(self) -> int:
        if not self.handle:
            raise ValueError("FakeStream is closed")
        return self.handle

    def sleep(self, seconds: float) -> None:
        """Queue a pause of ``seconds``."""
        check(rr_test_fake_stream_sleep(self._live(), float(seconds)), what="FakeStream")

    def copy(self, dst: FakeDeviceArray, src: Any) -> None:
        """Queue ``dst[...] = src`` (a host array or a FakeDeviceArray of the same size).

        Both must be C-contiguous with the same number of bytes; ``dst`` is filled with
        0xFF bytes when the copy starts, like the fake backend's device copies."""
        s = self._live()
        if not isinstance(dst, FakeDeviceArray):
            raise TypeError(f"dst must be a FakeDeviceArray, not {type(dst).__name__}")
        src_host = src._host if isinstance(src, FakeDeviceArray) else np.asarray(src)
        d, h = dst._host, src_host
        if not (d.flags.c_contiguous and h.flags.c_contiguous):
            raise ValueError("FakeStream.copy needs C-contiguous arrays")
        if d.nbytes != h.nbytes:
            raise ValueError(f"FakeStream.copy: {h.nbytes} bytes into {d.nbytes}")
        self._keep.append((d, h))
        check(rr_test_fake_stream_copy(s, d.__array_interface__["data"][0] | FAKE_TAG,
                                           h.__array_interface__["data"][0], d.nbytes),
              what="FakeStream")

    def synchronize(self) -> None:
        """Wait until everything queued so far has run."""
        check(rr_test_fake_stream_sync(self._live()), what="FakeStream")
        self._keep.clear()

    def close(self) -> None:
        """Finish the queued work and stop the stream's thread."""
        if self.handle:
            h, self.handle = self.handle, 0
            check(rr_test_fake_stream_destroy(h), what="FakeStream")
            self._keep.clear()

    def __enter__(self) -> FakeStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass


class FakeDeviceArray:
    """Host memory posing as GPU memory.

    Exposes ``__cuda_array_interface__`` (version 3) with a tagged address that only the
    fake device backend (``csrc/device/device_fake.c``) understands; ringred's collectives take it
    like a CuPy array and return FakeDeviceArray results.  It deliberately has no
    ``__array__``: like a real GPU array it must be copied out explicitly with ``get()``.
    ``stream`` (a FakeStream or None) is the producer stream whose queued work writes the
    array; it is exported as the interface's ``"stream"``, and host access (``get``,
    ``copy``, item assignment) synchronizes it first.
    """

    def __init__(self, host: np.ndarray, stream: FakeStream | None = None):
        self._host = host
        self.stream = stream

    def _sync(self) -> None:
        if self.stream is not None and self.stream.handle:
            self.stream.synchronize()

    @classmethod
    def empty(cls, shape: tuple | int, dtype: Any) -> FakeDeviceArray:
        """A new array filled with 0xFF bytes (NaN for floats): unwritten output shows."""
        host = np.empty(shape, dtype)
        host.reshape(-1).view(np.uint8)[...] = 0xFF
        return cls(host)

    @classmethod
    def from_host(cls, a: Any, stream: FakeStream | None = None) -> FakeDeviceArray:
        """A fake device copy of a host array (like ``cupy.asarray``); ``stream`` becomes
        the array's producer stream."""
        return cls(np.array(a, copy=True, order="C"), stream)

    @property
    def __cuda_array_interface__(self) -> dict:
        h = self._host
        contiguous = h.flags.c_contiguous
        return {
            "shape": h.shape,
            "typestr": h.dtype.str,
            "data": (h.__array_interface__["data"][0] | FAKE_TAG, False),
            "strides": None if contiguous else h.strides,
            "version": 3,
            # the handle as an int (CAI v3), None without a (live) producer stream
            "stream": (self.stream.handle or None) if self.stream is not None else None,
        }

    @property
    def shape(self) -> tuple:
        return self._host.shape

    @property
    def dtype(self) -> np.dtype:
        return self._host.dtype

    @property
    def size(self) -> int:
        return self._host.size

    @property
    def ndim(self) -> int:
        return self._host.ndim

    def get(self) -> np.ndarray:
        """A host copy (like ``cupy.ndarray.get``), after the producer stream's work."""
        self._sync()
        return self._host.copy()

    def copy(self) -> FakeDeviceArray:
        """A C-contiguous copy, after the producer stream's work."""
        self._sync()
        return FakeDeviceArray(np.ascontiguousarray(self._host).copy(), self.stream)

    def __getitem__(self, key: Any) -> FakeDeviceArray:
        return FakeDeviceArray(self._host[key], self.stream)

    def __setitem__(self, key: Any, value: Any) -> None:
        self._sync()
        if isinstance(value, FakeDeviceArray):
            value._sync()
            value = value._host
        self._host[key] = value

    def __repr__(self) -> str:
        return f"FakeDeviceArray({self._host!r})"


# ---------------------------------------------------------------- torch CPU as a device
def _is_torch_cpu(x: Any) -> bool:
    return is_torch(x) and x.device.type == "cpu"


def _torch_cpu_view(x: Any) -> Any:
    x = x.detach()
    if not x.is_contiguous():
        x = x.contiguous()
    # stream 0: the host, where torch's CPU work is already complete
    return DeviceView(x, int(x.data_ptr()), tuple(x.shape), x.dtype, _torch_code(x.dtype), 0,
                      0, BACKEND_FAKE, "torch")


def torch_cpu_as_device(enable: bool = True) -> None:
    """Send torch CPU tensors through ringred's device path on the fake device backend.

    The whole GPU chain (DistributedOptimizer hooks, device requests in the engine, the device
    fusion buffer, staging, unpacking, stream ordering) then runs in CI without a GPU, on the
    tensors of an ordinary CPU model.  ``enable=False`` restores the normal host path.
    """
    unregister_device_adapter(_is_torch_cpu)
    if enable:
        register_device_adapter(_is_torch_cpu, _torch_cpu_view)


register_fake_array(FakeDeviceArray)
