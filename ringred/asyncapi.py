"""Asynchronous collectives (STAND-IN: runs the synchronous call at submission).

The real engine replaces this module; only the names and signatures below are relied upon.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .collectives import allreduce, broadcast
from .ops import ReduceOp

__all__ = [
    "Handle", "allreduce_async", "broadcast_async", "grouped_allreduce_async", "poll",
    "synchronize", "join",
]


class Handle:
    """A submitted collective; ``wait()`` returns its result."""

    def __init__(self, result: Any = None, error: BaseException | None = None) -> None:
        self._result = result
        self._error = error

    def wait(self, timeout: float | None = None) -> Any:
        """The result (raises the collective's error, if any)."""
        if self._error is not None:
            raise self._error
        return self._result

    def done(self) -> bool:
        """True once the collective has finished."""
        return True


def _run(fn, *args, **kwargs) -> Handle:
    return Handle(fn(*args, **kwargs))


def allreduce_async(
    x: Any,
    op: ReduceOp = ReduceOp.Average,
    name: str | None = None,
    prescale_factor: float = 1.0,
    postscale_factor: float = 1.0,
    out: Any = None,
) -> Handle:
    """Submit an allreduce of ``x`` (``out=x``: in place)."""
    return _run(allreduce, x, op=op, name=name, prescale_factor=prescale_factor,
                postscale_factor=postscale_factor, out=out)


def broadcast_async(x: Any, root_rank: int, name: str | None = None, out: Any = None) -> Handle:
    """Submit a broadcast of ``root_rank``'s ``x``."""
    return _run(broadcast, x, root_rank, name=name, out=out)


def grouped_allreduce_async(
    xs: Sequence[Any],
    op: ReduceOp = ReduceOp.Average,
    name: str | None = None,
    prescale_factor: float = 1.0,
    postscale_factor: float = 1.0,
) -> Handle:
    """Submit allreduces of every tensor in ``xs``; the result is the list of results."""
    return Handle([
        allreduce(x, op=op, name=f"{name}.{i}" if name else None, prescale_factor=prescale_factor,
                  postscale_factor=postscale_factor)
        for i, x in enumerate(xs)
    ])


def poll(handle: Handle) -> bool:
    """True once ``handle`` has finished."""
    return handle.done()


def synchronize(handle: Handle) -> Any:
    """Wait for ``handle`` and return its result."""
    return handle.wait()


def join() -> int:
    """Not available in the stand-in."""
    raise NotImplementedError("join() needs the asynchronous engine")
