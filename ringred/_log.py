"""ringred's logging: what ran, for a user asking "which transport, which plan?".

Off by default.  ``RINGRED_LOG=info`` (or ``debug``) attaches a stderr handler to the
``ringred`` logger; or configure the standard ``logging`` module yourself, e.g.
``logging.getLogger("ringred").setLevel(logging.INFO)`` plus a handler.

* info: once per communicator (``ringred.init()``, process sets) and once per background
  engine: rank, size, transport, CPU kernels, build, and every ``RINGRED_*`` setting with
  its value and source (environment or default);
* debug: also each synchronous collective's plan (size, dtype, op, the path its thresholds
  select, whether the shared-memory transport read shared buffers in place).

The C core never prints: everything here comes from its query functions.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator
from typing import Any

from ._lib import (
    cstr,
    rr_build_info,
    rr_comm_hierarchical,
    rr_comm_hosts,
    rr_comm_zero_copy_calls,
    rr_kernel_path,
)
from .settings import value

logger = logging.getLogger("ringred")

_LEVELS = {"info": logging.INFO, "debug": logging.DEBUG}


def _configure_from_env() -> None:
    v = value("RINGRED_LOG")  # read as the settings table reads it
    if v.state == "rejected":
        logger.warning("%s", v.message)
    level = _LEVELS.get(v.text)
    if level is None:  # off, 0, none
        return
    logger.setLevel(level)
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("ringred %(levelname)s: %(message)s"))
        logger.addHandler(handler)


_configure_from_env()


_tls = threading.local()


def debug_enabled() -> bool:
    """True when each call's plan is logged (cheap enough for the hot path)."""
    return logger.isEnabledFor(logging.DEBUG) and not getattr(_tls, "inside", False)


@contextlib.contextmanager
def suppressed() -> Iterator[None]:
    """No per-call logging inside (the logged wrapper calls the collective itself)."""
    _tls.inside = True
    try:
        yield
    finally:
        _tls.inside = False


def settings(names: list[str] | None = None) -> list[str]:
    """``NAME=value (source)`` for the RINGRED_* settings (all, or ``names``): the value in
    force and whether it came from the environment, the default, or was clamped / rejected."""
    from .settings import settings as table
    from .settings import value

    out = []
    for s in table():
        if names is not None and s.name not in names:
            continue
        v = value(s.name)
        source = {"default": "default", "set": "environment"}.get(
            v.state, f"{v.state}: {v.raw!r} given")
        out.append(f"{s.name}={v.text or 'unset'} ({source})")
    return out


ENGINE_SETTINGS = ["RINGRED_FUSION_THRESHOLD", "RINGRED_FUSION_MAX_TENSOR",
                   "RINGRED_CACHE_CAPACITY", "RINGRED_STALL_CHECK_SECONDS",
                   "RINGRED_STALL_SHUTDOWN_SECONDS", "RINGRED_ENGINE_COLD_SET_BYTES",
                   "RINGRED_TIMELINE", "RINGRED_ENGINE_YIELD_US", "RINGRED_ENGINE_SLEEP_US",
                   "RINGRED_ENGINE_WAIT_YIELD_US"]


def communicator(ctx: Any) -> None:
    """Log, once, what a new communicator runs with (info)."""
    if not logger.isEnabledFor(logging.INFO):
        return
    comm_settings = [s for s in settings() if s.split("=", 1)[0] not in ENGINE_SETTINGS]
    hosts = int(rr_comm_hosts(ctx.handle))
    where = f", {hosts} hosts" if hosts > 1 else ""
    if rr_comm_hierarchical(ctx.handle):
        where += ", hierarchical (shm inside each host, mpi between hosts)"
    logger.info(
        "communicator: rank %d of %d (local %d of %d), transport %s%s%s; cpu kernels %s; "
        "build %s; settings: %s",
        ctx.rank, ctx.size, ctx.local_rank, ctx.local_size, ctx.transport,
        _transport_why(ctx), where, cstr(rr_kernel_path()), cstr(rr_build_info()),
        "; ".join(comm_settings))


def _transport_why(ctx: Any) -> str:
    asked = os.environ.get("RINGRED_TRANSPORT")
    if asked:
        return f" (RINGRED_TRANSPORT={asked})"
    if ctx.size == 1:
        return " (one rank)"
    if ctx.transport == "shm":
        return " (auto: every rank on one host)"
    return " (auto: ranks on several hosts, or shared memory unavailable)"


def engine(ctx: Any) -> None:
    """Log, once, what a new background engine runs with (info)."""
    if not logger.isEnabledFor(logging.INFO):
        return
    logger.info("engine: rank %d of %d, transport %s (its own communicator, same rules); "
                "settings (rank 0's are used on every rank): %s",
                ctx.rank, ctx.size, ctx.transport, "; ".join(settings(ENGINE_SETTINGS)))


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name) or default)
    except ValueError:
        return default


def allreduce_plan(ctx: Any, nbytes: int) -> str:
    """The path the C core's thresholds select for an allreduce of ``nbytes`` on ``ctx``."""
    if ctx.size == 1:
        return "one rank: local copy"
    if ctx.transport == "shm":
        small = _env_int("RINGRED_SHM_SMALL_BYTES", 32 << 10)
        if nbytes <= small:
            return f"shm one-sync path (<= RINGRED_SHM_SMALL_BYTES={small})"
        slot = _env_int("RINGRED_SHM_SLOT_BYTES", 256 << 10)
        stream = _env_int("RINGRED_SHM_STREAM_BYTES", 8 << 20)
        nt = ", non-temporal stores" if stream and nbytes >= stream else ""
        return (f"shm chunked path (> RINGRED_SHM_SMALL_BYTES={small}; chunks <= "
                f"RINGRED_SHM_SLOT_BYTES={slot}{nt})")
    small = _env_int("RINGRED_SMALL_BYTES", 64 << 10)
    if nbytes <= small:
        return f"mpi latency path, recursive doubling (<= RINGRED_SMALL_BYTES={small})"
    if rr_comm_hierarchical(ctx.handle):
        return (f"hierarchical (> RINGRED_SMALL_BYTES={small}): shm reduce-scatter inside the "
                "host, mpi allreduce of the slice across hosts, shm allgather")
    seg = _env_int("RINGRED_SEGMENT_BYTES", 256 << 10)
    return f"mpi segmented ring (> RINGRED_SMALL_BYTES={small}; segments of {seg} B)"


def zero_copy_calls(ctx: Any) -> int:
    """The communicator's count of calls that read shared buffers in place."""
    return int(rr_comm_zero_copy_calls(ctx.handle))


def call(ctx: Any, kind: str, x: Any, detail: str, zero_copy_before: int | None = None) -> None:
    """Log one synchronous call on input ``x`` and its plan (debug)."""
    nbytes = int(getattr(x, "nbytes", 0) or 0)
    shape = tuple(getattr(x, "shape", ()))
    dtype = getattr(x, "dtype", type(x).__name__)
    plan = allreduce_plan(ctx, nbytes) if kind == "allreduce" else f"transport {ctx.transport}"
    zc = ""
    if zero_copy_before is not None and ctx.transport == "shm":
        read = zero_copy_calls(ctx) > zero_copy_before
        zc = "; shared buffers read in place" if read else "; copied through the segment"
    logger.debug("rank %d: %s: shape %s %s (%d B)%s on %d ranks: %s%s", ctx.rank, kind, shape,
                 dtype, nbytes, detail, ctx.size, plan, zc)
