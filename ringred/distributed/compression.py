"""Gradient compression for the wire: cast to a 16-bit float before the allreduce, back after.

A compressor has two static methods::

    wire, ctx = compressor.compress(x)      # what is reduced, and what decompress needs
    x = compressor.decompress(wire, ctx)     # same dtype as the x given to compress

``Compression.none`` sends tensors as they are; ``Compression.fp16`` and ``Compression.bf16``
cast floating-point tensors wider than 16 bits (float32, float64) to float16 / bfloat16,
halving (or quartering) the bytes on the wire.  Integer and 16-bit tensors pass unchanged.
NumPy arrays use ``numpy.float16`` / ``ml_dtypes.bfloat16``; torch tensors use
``torch.float16`` / ``torch.bfloat16``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._arrays import bfloat16_dtype, is_torch

__all__ = ["Compression", "Compressor", "NoneCompressor", "FP16Compressor", "BF16Compressor"]


class Compressor:
    """Interface of a gradient compressor (see the module docstring)."""

    @staticmethod
    def compress(x: Any) -> tuple[Any, Any]:
        """Return ``(wire, ctx)``: the tensor to reduce and what ``decompress`` needs."""
        raise NotImplementedError

    @staticmethod
    def decompress(wire: Any, ctx: Any) -> Any:
        """Return the reduced ``wire`` tensor in the dtype ``compress`` was given."""
        raise NotImplementedError


class NoneCompressor(Compressor):
    """No compression: the tensor goes on the wire as it is."""

    @staticmethod
    def compress(x: Any) -> tuple[Any, Any]:
        """Return ``(x, None)``."""
        return x, None

    @staticmethod
    def decompress(wire: Any, ctx: Any) -> Any:
        """Return ``wire``."""
        return wire


class _CastCompressor(Compressor):
    """Cast wide floating-point tensors to a 16-bit type for the wire."""

    _torch_name = ""
    _numpy_dtype: np.dtype | None = None

    @classmethod
    def _numpy_wire(cls) -> np.dtype | None:
        return cls._numpy_dtype

    @classmethod
    def compress(cls, x: Any) -> tuple[Any, Any]:
        """Return ``(x cast to the 16-bit type, x's dtype)``, or ``(x, None)`` if not cast."""
        if is_torch(x):
            import torch

            wire = getattr(torch, cls._torch_name)
            if x.is_floating_point() and x.element_size() > wire.itemsize:
                return x.to(wire), x.dtype
            return x, None
        dt = getattr(x, "dtype", None)
        if dt is not None and dt.kind == "f" and dt.itemsize > 2:
            wire = cls._numpy_wire()
            if wire is None:  # pragma: no cover - ml_dtypes is a dependency
                raise RuntimeError("bfloat16 compression of NumPy arrays needs ml_dtypes")
            return x.astype(wire), dt
        return x, None

    @staticmethod
    def decompress(wire: Any, ctx: Any) -> Any:
        """Cast ``wire`` back to the dtype recorded by ``compress``."""
        if ctx is None:
            return wire
        if is_torch(wire):
            return wire.to(ctx)
        return wire.astype(ctx)


class FP16Compressor(_CastCompressor):
    """float32/float64 → float16 on the wire (range ±65504: scale gradients if they can
    exceed it)."""

    _torch_name = "float16"
    _numpy_dtype = np.dtype(np.float16)


class BF16Compressor(_CastCompressor):
    """float32/float64 → bfloat16 on the wire (float32's range, 8 significant bits)."""

    _torch_name = "bfloat16"

    @classmethod
    def _numpy_wire(cls) -> np.dtype | None:
        return bfloat16_dtype()  # imports ml_dtypes on first use


class Compression:
    """The available compressors: ``Compression.none``, ``.fp16``, ``.bf16``."""

    none = NoneCompressor
    fp16 = FP16Compressor
    bf16 = BF16Compressor
