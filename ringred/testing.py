"""Test helpers: a fake GPU array so that the device staging path runs without a GPU."""

from __future__ import annotations

from typing import Any

import numpy as np

# csrc/device_fake.c: "device" addresses are host addresses with this bit set, so that a
# host dereference of one faults instead of silently reading the right bytes.
FAKE_TAG = 1 << 62


class FakeDeviceArray:
    """Host memory posing as GPU memory.

    Exposes ``__cuda_array_interface__`` (version 3) with a tagged address that only the
    fake device backend (``csrc/device_fake.c``) understands; ringred's collectives take it
    like a CuPy array and return FakeDeviceArray results.  It deliberately has no
    ``__array__``: like a real GPU array it must be copied out explicitly with ``get()``.
    """

    __ringred_fake_device__ = True

    def __init__(self, host: np.ndarray):
        self._host = host

    @classmethod
    def empty(cls, shape: tuple | int, dtype: Any) -> FakeDeviceArray:
        """A new array filled with 0xFF bytes (NaN for floats): unwritten output shows."""
        host = np.empty(shape, dtype)
        host.reshape(-1).view(np.uint8)[...] = 0xFF
        return cls(host)

    @classmethod
    def from_host(cls, a: Any) -> FakeDeviceArray:
        """A fake device copy of a host array (like ``cupy.asarray``)."""
        return cls(np.array(a, copy=True, order="C"))

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
            "stream": None,
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
        """A host copy (like ``cupy.ndarray.get``)."""
        return self._host.copy()

    def copy(self) -> FakeDeviceArray:
        """A C-contiguous copy."""
        return FakeDeviceArray(np.ascontiguousarray(self._host).copy())

    def __getitem__(self, key: Any) -> FakeDeviceArray:
        return FakeDeviceArray(self._host[key])

    def __setitem__(self, key: Any, value: Any) -> None:
        self._host[key] = value._host if isinstance(value, FakeDeviceArray) else value

    def __repr__(self) -> str:
        return f"FakeDeviceArray({self._host!r})"


# ---------------------------------------------------------------- torch CPU as a device
def _is_torch_cpu(x: Any) -> bool:
    from ._arrays import is_torch

    return is_torch(x) and x.device.type == "cpu"


def _torch_cpu_view(x: Any) -> Any:
    from ._arrays import BACKEND_FAKE, DeviceView, _torch_code

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
    from ._arrays import register_device_adapter, unregister_device_adapter

    unregister_device_adapter(_is_torch_cpu)
    if enable:
        register_device_adapter(_is_torch_cpu, _torch_cpu_view)
