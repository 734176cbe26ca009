"""The process's ringred context: the communicator handle created by ``init()``."""

from __future__ import annotations

import atexit
import contextlib
import threading
import warnings
import zlib
from collections.abc import Callable, Iterator
from typing import Any

from . import _log
from ._lib import (
    NULL,
    cstr,
    make_error,
    new,
    rr_comm_create_ex,
    rr_comm_destroy,
    rr_comm_exit_notice,
    rr_comm_local_rank,
    rr_comm_local_size,
    rr_comm_rank,
    rr_comm_set_thread,
    rr_comm_size,
    rr_comm_thread_seq,
    rr_comm_transport,
    rr_comm_transport_note,
    rr_engine_exit_reason,
)
from .errors import NotInitializedError


class Context:
    """One initialized ringred communicator (a duplicate of the user's MPI communicator).

    ``transport`` is "auto", "shm" or "mpi"; None reads ``RINGRED_TRANSPORT`` (default auto:
    shared memory when every rank is on one host).  Creating one is collective.
    """

    def __init__(self, mpi_comm: Any, transport: str | None = None):
        handle = new("rr_comm **")
        tr = transport.encode() if transport else NULL
        st = rr_comm_create_ex(mpi_comm.py2f(), tr, handle)
        if st != 0:
            err = make_error(st, handle[0], "init")
            rr_comm_destroy(handle[0])
            raise err
        self.mpi_comm = mpi_comm
        self.handle = handle[0]
        self.rank: int = rr_comm_rank(self.handle)
        self.size: int = rr_comm_size(self.handle)
        self.local_rank: int = rr_comm_local_rank(self.handle)
        self.local_size: int = rr_comm_local_size(self.handle)
        self.transport: str = cstr(rr_comm_transport(self.handle))
        note = cstr(rr_comm_transport_note(self.handle))
        if note:
            # auto fell back to MPI although every rank is on one host (the same on every rank)
            warnings.warn(
                f"ringred: using the MPI transport instead of shared memory: {note}. Give "
                "/dev/shm more room (docker: --shm-size) or set RINGRED_TRANSPORT=mpi to "
                "choose MPI and silence this warning.",
                RuntimeWarning,
                stacklevel=3,
            )
        # the global ranks of a process set's members (index = rank in the set); None for
        # the global communicator.  Root ranks are global ranks, as in Horovod.
        self.members: list[int] | None = None
        self._counter = 0
        self._lock = threading.Lock()
        # Synchronous calls: one at a time per communicator, and each call's agreement
        # carries the calling thread (a hash of its name), so that calls of different threads
        # never pair up across ranks (csrc/mpi/agree.c): a MismatchError instead of a wrong result.
        self.serial = threading.RLock()
        self.caller = 0  # threading.get_ident() of the thread the tag is set for
        self._caller_name = ""
        self._seqs: dict[str, int] = {}  # thread name -> its agreements so far
        self._closers: list[Any] = []
        self._dups: dict[str, Any] = {}  # purpose -> MPI communicator (dup_comm)
        self.engine: Any = None  # ringred._engine.Engine, created by get_engine()
        _log.communicator(self)

    def claim(self) -> None:
        """Tag the next synchronous calls with the calling thread (hold ``serial``).  The
        calls check ``caller`` first, so that a thread keeps its tag (its name when it first
        called) without a lookup per call."""
        t = threading.current_thread()
        if t.ident != self.caller or t.name != self._caller_name:
            if self.caller:
                self._seqs[self._caller_name] = rr_comm_thread_seq(self.handle)
            name = t.name
            rr_comm_set_thread(self.handle, zlib.crc32(name.encode()), self._seqs.get(name, 0))
            self.caller, self._caller_name = threading.get_ident(), name

    def dup_comm(self, purpose: str) -> Any:
        """A duplicate of the MPI communicator for ``purpose``'s own traffic (alltoall runs
        through mpi4py on one), made on first use (collective: every rank's first call for
        ``purpose`` must come at the same point) and freed when the context closes."""
        comm = self._dups.get(purpose)
        if comm is None:
            comm = self._dups[purpose] = self.mpi_comm.Dup()
            self.on_close(comm.Free)
        return comm

    def on_close(self, fn: Any) -> None:
        """Run ``fn()`` when this context closes (before the communicator is freed)."""
        self._closers.append(fn)

    def get_engine(self) -> Any:
        """The background engine, created on first use (collective: every rank must make its
        first asynchronous call at the same point of its ringred calls)."""
        eng = self.engine
        if eng is None:
            with self._lock:
                if self.engine is None:
                    from ._engine import Engine

                    self.engine = Engine(self.mpi_comm, self.rank, self.size, self.handle)
                    _log.engine(self)
                eng = self.engine
        return eng

    def auto_name(self, kind: str) -> str:
        """Deterministic name for an unnamed tensor (requires the same call order everywhere)."""
        with self._lock:
            self._counter += 1
            return f"{kind}.noname.{self._counter}"

    def close(self) -> None:
        if self.engine is not None:
            eng, self.engine = self.engine, None
            eng.close()
        while self._closers:
            try:
                self._closers.pop()()
            except Exception:  # closing must not raise at exit
                pass
        if self.handle is not None:
            rr_comm_destroy(self.handle)
            self.handle = None


_ctx: Context | None = None
_atexit_registered = False
# Run by shutdown() before the context closes (process_sets registers its reset at import).
_before_shutdown: list[Callable[[], None]] = []


def before_shutdown(fn: Callable[[], None]) -> None:
    """Call ``fn()`` at every ``shutdown()`` of an initialized ringred, before the context
    closes."""
    _before_shutdown.append(fn)


@contextlib.contextmanager
def using(ctx: Context) -> Iterator[Context]:
    """Make ``ctx`` the active context inside the ``with`` block (benchmarks, tests)."""
    global _ctx
    saved, _ctx = _ctx, ctx
    try:
        yield ctx
    finally:
        _ctx = saved


def current() -> Context:
    """The active context, or NotInitializedError."""
    if _ctx is None:
        raise NotInitializedError("ringred is not initialized: call ringred.init() first")
    return _ctx


def init(comm: Any = None) -> None:
    """Initialize ringred over ``comm`` (an mpi4py communicator; default COMM_WORLD).

    Calling it again with the same communicator does nothing; with another communicator it
    re-initializes over that one.
    """
    global _ctx, _atexit_registered
    from mpi4py import MPI  # initializes MPI (MPI_THREAD_MULTIPLE) on first import

    if comm is None:
        comm = MPI.COMM_WORLD
    if _ctx is not None:
        if _ctx.mpi_comm == comm:
            return
        shutdown()
    from .settings import warn_invalid_settings

    # RINGRED_* values clamped or rejected: once per value; settings that take rank 0's
    # value only warn there (another rank's own value is not the one used)
    warn_invalid_settings(rank=comm.Get_rank())
    _ctx = Context(comm)
    if not _atexit_registered:
        atexit.register(_shutdown_at_exit)  # runs before mpi4py's own MPI_Finalize
        _atexit_registered = True


def _exit_reason() -> str:
    """Why this process is ending, for the peers' pending requests (called at exit)."""
    import os
    import sys

    exc = getattr(sys, "last_exc", None) or getattr(sys, "last_value", None)
    if exc is not None:
        return (f"its process (pid {os.getpid()}) exited after an uncaught "
                f"{type(exc).__name__}: {exc}")
    return f"its process (pid {os.getpid()}) exited without calling ringred.shutdown()"


def _shutdown_at_exit() -> None:
    """atexit: like shutdown(), telling the engine's peers that this process is exiting."""
    if _ctx is not None:
        why = _exit_reason().encode(errors="replace")
        # peers waiting in a synchronous collective on us learn it too (no wait here)
        if _ctx.handle is not None:
            rr_comm_exit_notice(_ctx.handle, why)
        eng = _ctx.engine
        if eng is not None and getattr(eng, "h", None):
            rr_engine_exit_reason(eng.h, why)
    shutdown()


def shutdown() -> None:
    """Release ringred's communicator.  Safe to call more than once."""
    global _ctx
    if _ctx is not None:
        for fn in _before_shutdown:
            fn()
    ctx, _ctx = _ctx, None
    if ctx is not None:
        ctx.close()


def is_initialized() -> bool:
    """True between ``init()`` and ``shutdown()``."""
    return _ctx is not None
