"""Reused result arrays for allreduces without ``out=`` (``avg = allreduce_async(g).wait()``).

A fresh result array of a large gradient costs page faults on every step (the allocator
returns big blocks to the kernel and gets new zeroed pages on the next allocation), which
made new results 1.5-3x slower than reducing in place.  The pool keeps the arrays it has
handed out, by shape and dtype, and gives one out again only when nobody else refers to it
any more: the result is the user's until they drop it (and every view of it, every tensor
made from it and the handle that returned it).  Whether anybody still refers to an array
is its reference count, so a held result is never handed out twice.

Only arrays of at least ``RINGRED_RESULT_POOL_MIN_BYTES`` (64 KiB) are pooled, and at most
``RINGRED_RESULT_POOL_BYTES`` (1 GiB; 0 turns the pool off) in all; beyond that results are
fresh arrays as before.  There is no limit per shape: a network has many tensors of one
shape (ResNet-50: up to 6 per shape, 12 arrays when a step's results are held while the
next step is submitted).  Arrays handed out go to the end of their shape's list, so the
first ones scanned are the oldest, which the caller has most likely dropped: in a training
loop a scan stops at its first array.  ``clear()`` (at engine shutdown) lets go.
"""

from __future__ import annotations

import sys
import threading

import numpy as np

from .settings import value


def _env_bytes(name: str) -> int:
    """The setting's value in force, as the settings table reads it (an invalid value is
    replaced by the default; ``ringred.init()`` warns about it)."""
    return int(float(value(name).text))


def _first_free(bufs: list[np.ndarray], free: int) -> int:
    """Index of the first array referred to by nothing but ``bufs`` (and this loop), or -1.
    A view refers to its base, a tensor made with ``torch.from_numpy`` to its array."""
    i = 0
    for b in bufs:
        if sys.getrefcount(b) <= free:
            return i
        i += 1
    return -1


def _calibrate() -> int:
    """The reference count ``_first_free`` sees for an array held by its list alone."""
    bufs = [np.empty(1)]
    for free in range(1, 16):
        if _first_free(bufs, free) == 0:
            return free
    raise RuntimeError("cannot calibrate the result pool")  # pragma: no cover


_FREE = _calibrate()


class ResultPool:
    """Result arrays by (shape, dtype), reused once their users have dropped them."""

    def __init__(self, limit: int | None = None, min_bytes: int | None = None):
        self.limit = _env_bytes("RINGRED_RESULT_POOL_BYTES") if limit is None else limit
        self.min_bytes = (_env_bytes("RINGRED_RESULT_POOL_MIN_BYTES")
                          if min_bytes is None else min_bytes)
        self._bufs: dict[tuple, list[np.ndarray]] = {}
        self._bytes = 0
        self._lock = threading.Lock()
        self.reused = 0  # arrays handed out again (tests, benchmarks)

    def take(self, x: np.ndarray) -> np.ndarray:
        """A C-contiguous array of ``x``'s shape and dtype that nobody else refers to."""
        return self.take_shape(x.shape, x.dtype, x.nbytes)

    def take_shape(self, shape: tuple, dtype: np.dtype, nbytes: int) -> np.ndarray:
        """A C-contiguous array of this shape and dtype (``nbytes`` in all) that nobody
        else refers to."""
        if nbytes < self.min_bytes or self.limit == 0:
            return np.empty(shape, dtype)
        key = (shape, dtype)
        with self._lock:
            bufs = self._bufs.get(key)
            if bufs is None:
                bufs = self._bufs[key] = []
            i = _first_free(bufs, _FREE)
            if i >= 0:
                b = bufs.pop(i)
                bufs.append(b)  # most recently handed out last: free ones come first
                self.reused += 1
                return b
            b = np.empty(shape, dtype)
            if self._bytes + nbytes <= self.limit:
                bufs.append(b)
                self._bytes += nbytes
            return b

    def clear(self) -> None:
        """Forget every array (those still held by users stay theirs)."""
        with self._lock:
            self._bufs.clear()
            self._bytes = 0
