"""The process's ringred context: the communicator handle created by ``init()``."""

from __future__ import annotations

import atexit
import threading
from typing import Any

from ._lib import ffi, lib, make_error
from .errors import NotInitializedError


class Context:
    """One initialized ringred communicator (a duplicate of the user's MPI communicator)."""

    def __init__(self, mpi_comm: Any):
        handle = ffi.new("rr_comm **")
        st = lib.rr_comm_create(mpi_comm.py2f(), handle)
        if st != 0:
            err = make_error(st, handle[0], "init")
            lib.rr_comm_destroy(handle[0])
            raise err
        self.mpi_comm = mpi_comm
        self.handle = handle[0]
        self.rank: int = lib.rr_comm_rank(self.handle)
        self.size: int = lib.rr_comm_size(self.handle)
        self.local_rank: int = lib.rr_comm_local_rank(self.handle)
        self.local_size: int = lib.rr_comm_local_size(self.handle)
        self._counter = 0
        self._lock = threading.Lock()
        self.engine: Any = None  # ringred._engine.Engine, created by get_engine()

    def get_engine(self) -> Any:
        """The background engine, created on first use (collective: every rank must make its
        first asynchronous call at the same point of its ringred calls)."""
        eng = self.engine
        if eng is None:
            with self._lock:
                if self.engine is None:
                    from ._engine import Engine

                    self.engine = Engine(self.mpi_comm, self.rank, self.size)
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
        if self.handle is not None:
            lib.rr_comm_destroy(self.handle)
            self.handle = None


_ctx: Context | None = None
_atexit_registered = False


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
    _ctx = Context(comm)
    if not _atexit_registered:
        atexit.register(shutdown)  # runs before mpi4py's own MPI_Finalize
        _atexit_registered = True


def shutdown() -> None:
    """Release ringred's communicator.  Safe to call more than once."""
    global _ctx
    ctx, _ctx = _ctx, None
    if ctx is not None:
        ctx.close()


def is_initialized() -> bool:
    """True between ``init()`` and ``shutdown()``."""
    return _ctx is not None
