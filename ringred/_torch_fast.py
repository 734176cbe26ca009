"""The torch CPU hot paths of ``allreduce`` (``sync_args``) and ``allreduce_async``: a
contiguous CPU tensor of a supported dtype, no scale factors, reduced in place (``out`` is
the tensor), into another such tensor, or into a new one, goes to C (or the engine) by
address, with no NumPy view, no request struct and no finishing callback (a few
microseconds).  Anything else returns None and takes the general path, which also produces
every error message.  New results of NumPy dtypes of the engine come from its result pool
(ringred/_pool.py) as ``torch.from_numpy`` tensors: the pooled array is reused only once
that tensor and every view of it are gone (they hold the array)."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from ._args import FAST_OPS
from ._arrays import _EXTRA_DEVICE
from ._lib import FLOAT_DTYPES, HOST_BACKEND, MAX_DIMS, DType

_MAX_DIMS = MAX_DIMS
_TABLE: dict[Any, tuple[int, np.dtype | None]] = {}  # torch dtype -> (C code, NumPy dtype)


def _table(t: Any) -> dict[Any, tuple[int, np.dtype | None]]:
    if not _TABLE:
        # torch and NumPy name the dtypes alike; bfloat16 has no NumPy dtype of its own
        # (not pooled)
        _TABLE.update({getattr(t, c.name.lower()): (
            int(c), None if c == DType.BFLOAT16 else np.dtype(c.name.lower())) for c in DType})
    return _TABLE


def _plain(t: Any, x: Any) -> bool:
    """A dense, C-contiguous CPU tensor."""
    return x.is_cpu and x.layout is t.strided and x.is_contiguous()


def _plan(ctx: Any, eng: Any, x: Any, op: Any, pre: float, post: float,
          out: Any) -> tuple[int, int, float, int, Any] | None:
    """(dtype code, C op, postscale, divisor, result tensor) when the allreduce of torch
    tensor ``x`` can go by address: a dense, C-contiguous CPU tensor of a supported dtype,
    no scale factors, ``out`` None (a new tensor: from the engine's result pool when ``eng``
    is given), ``x`` itself or another such tensor.  None: the general path, which also makes
    every error message."""
    t = sys.modules.get("torch")
    if (t is None or pre != 1.0 or post != 1.0 or _EXTRA_DEVICE
            or not isinstance(x, t.Tensor)):
        return None
    kind = _table(t).get(x.dtype)
    fop = FAST_OPS.get(op)
    if kind is None or fop is None or not _plain(t, x):
        return None
    if eng is not None and x.dim() > _MAX_DIMS:  # the engine's requests carry the shape
        return None
    if out is None:
        nbytes = x.numel() * x.element_size()
        if eng is not None and kind[1] is not None and nbytes >= eng.results.min_bytes:
            res = t.from_numpy(eng.results.take_shape(tuple(x.shape), kind[1], nbytes))
        else:
            res = t.empty(x.shape, dtype=x.dtype)
    elif out is x or (isinstance(out, t.Tensor) and out.dtype == x.dtype
                      and out.shape == x.shape and _plain(t, out)):
        res = out
    else:
        return None
    code = kind[0]
    if not fop[1]:
        return code, fop[0], 1.0, 1, res
    if code in FLOAT_DTYPES:
        return code, fop[0], 1.0 / ctx.size, 1, res
    return code, fop[0], 1.0, ctx.size, res


def allreduce(ctx: Any, eng: Any, x: Any, op: Any, pre: float, post: float, out: Any,
              name: str) -> Any:
    """The engine handle of the allreduce of torch tensor ``x``, or None (general path)."""
    plan = _plan(ctx, eng, x, op, pre, post, out)
    if plan is None:
        return None
    code, cop, post_, div, res = plan
    # keep = (x, res): the handle holds both until done; wait() returns res
    return eng.allreduce_device(name, (x, res), x.data_ptr(), res.data_ptr(), x.numel(), code,
                                cop, 1.0, post_, div, x.shape, HOST_BACKEND, 0, 0, None)


def sync_args(ctx: Any, x: Any, op: Any, pre: float, post: float,
              out: Any) -> tuple[int, int, float, int, Any] | None:
    """``_plan`` for the synchronous allreduce (a new result is a fresh tensor).  Saves the
    NumPy view and dtype checks of the general path: about 7 us."""
    return _plan(ctx, None, x, op, pre, post, out)
