"""Moving between ``jax.Array`` and NumPy without copies where the memory allows."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from .._fused import ALIGN


def is_traced(x: Any) -> bool:
    """True for a value being traced by ``jax.jit`` (or another transformation)."""
    return isinstance(x, jax.core.Tracer)


def on_cpu(x: jax.Array) -> bool:
    """True if every shard of ``x`` lives in host memory (the CPU backend)."""
    return all(d.platform == "cpu" for d in x.devices())


def to_numpy(x: Any) -> np.ndarray:
    """A read-only NumPy view of a CPU ``jax.Array`` (no copy for a single-device array),
    or ``np.asarray(x)`` for anything else."""
    return np.asarray(x)


def to_jax(a: np.ndarray, like: Any = None) -> jax.Array:
    """``a`` as a ``jax.Array`` on ``like``'s device (default: JAX's default device).

    A C-contiguous host array whose data starts on a 64-byte boundary becomes the array's
    buffer on the CPU backend (no copy); ``a`` must then not be written afterwards, which
    holds for the fresh results ringred hands over."""
    device = None
    if isinstance(like, jax.Array) and not is_traced(like):
        devs = like.devices()
        if len(devs) == 1:
            device = next(iter(devs))
    return jax.device_put(a, device)


def to_jax_list(arrays: list[np.ndarray], likes: list) -> list:
    """``to_jax`` of every array, in one batched ``device_put`` when all go to one device."""
    devices = set()
    for v in likes:
        if isinstance(v, jax.Array) and not is_traced(v) and len(v.devices()) == 1:
            devices.add(next(iter(v.devices())))
        else:
            devices.add(None)
    if len(devices) == 1:
        return list(jax.device_put(arrays, devices.pop()))
    return [to_jax(a, like=v) for a, v in zip(arrays, likes, strict=True)]


def zero_copy(a: np.ndarray) -> bool:
    """Whether ``to_jax(a)`` can adopt ``a``'s memory (C-contiguous, 64-byte aligned)."""
    return a.flags.c_contiguous and a.ctypes.data % ALIGN == 0
