"""Helpers for workers that compare device transports in one process.

The device transport (``RINGRED_DEVICE_TRANSPORT=auto|ipc|staged``) is read when a ringred
communicator is created, so a second ringred context made while the variable says
``staged`` runs the staged path next to an ``ipc`` one; ``ringred.device.transport()``
tells which one a context took (after its first device collective).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import ringred
from ringred import _state


def context_with(transport: str) -> _state.Context:
    """A new ringred context (collective) over the active one's MPI communicator and host
    transport, created with ``RINGRED_DEVICE_TRANSPORT=transport``."""
    cur = _state.current()
    saved = os.environ.get("RINGRED_DEVICE_TRANSPORT")
    os.environ["RINGRED_DEVICE_TRANSPORT"] = transport
    try:
        return _state.Context(cur.mpi_comm, cur.transport)
    finally:
        if saved is None:
            del os.environ["RINGRED_DEVICE_TRANSPORT"]
        else:
            os.environ["RINGRED_DEVICE_TRANSPORT"] = saved


@contextlib.contextmanager
def active(ctx: _state.Context) -> Iterator[_state.Context]:
    """Make ``ctx`` the context of ringred's calls inside the block."""
    with _state.using(ctx):
        yield ctx


def transport_of(ctx: Any = None) -> tuple[str, str]:
    """``ringred.device.transport()`` of ``ctx`` (default: the active context)."""
    if ctx is None:
        return ringred.device.transport()
    with _state.using(ctx):
        return ringred.device.transport()


def expect_transport(ctx: Any, want: str) -> None:
    """The context took ``want`` (call after its first device collective)."""
    name, why = transport_of(ctx)
    assert name == want, f"context asked for the {want} transport took {name!r}: {why}"
