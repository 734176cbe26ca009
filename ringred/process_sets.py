"""Process sets: collectives over a subset of the ranks (a sub-communicator each)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from . import _state
from .errors import NotInitializedError


class ProcessSet:
    """A group of ranks that run collectives among themselves.

    Create with the ranks (``ProcessSet([0, 2])``) and register it on every rank with
    ``add_process_set``; pass it as ``process_set=`` to any collective.
    """

    def __init__(self, ranks: Sequence[int] | None = None):
        self.ranks: list[int] | None = sorted(set(int(r) for r in ranks)) if ranks is not None \
            else None
        self.process_set_id: int | None = 0 if ranks is None else None
        self._ctx: _state.Context | None = None
        self._comm: Any = None

    def _context(self) -> _state.Context:
        if self.ranks is None:
            return _state.current()
        if self.process_set_id is None:
            raise ValueError(f"process set {self.ranks} is not registered: call add_process_set")
        if self._ctx is None:
            raise ValueError(f"this rank is not in process set {self.ranks}")
        return self._ctx

    def included(self) -> bool:
        """Whether this rank belongs to the set."""
        if self.ranks is None:
            return True
        return _state.current().rank in self.ranks

    def size(self) -> int:
        """Number of ranks in the set."""
        return _state.current().size if self.ranks is None else len(self.ranks)

    def rank(self) -> int:
        """This rank's index within the set (ValueError if not included)."""
        return self._context().rank

    def __repr__(self) -> str:
        who = "global" if self.ranks is None else self.ranks
        return f"ProcessSet({who}, id={self.process_set_id})"


global_process_set = ProcessSet()
_registered: dict[int, ProcessSet] = {0: global_process_set}


def add_process_set(process_set: ProcessSet | Sequence[int]) -> ProcessSet:
    """Register a process set.  Collective: every rank of the global set must call it."""
    ps = process_set if isinstance(process_set, ProcessSet) else ProcessSet(process_set)
    ctx = _state.current()
    assert ps.ranks is not None
    if ps.process_set_id is not None:
        raise ValueError(f"{ps} is already registered")
    bad = [r for r in ps.ranks if not 0 <= r < ctx.size]
    if bad or not ps.ranks:
        raise ValueError(f"process set ranks {ps.ranks} are not in [0, {ctx.size})")
    for other in _registered.values():
        if other.ranks == ps.ranks:
            raise ValueError(f"a process set with ranks {ps.ranks} is already registered")
    world = ctx.mpi_comm
    group = world.Get_group().Incl(ps.ranks)
    comm = world.Create(group)  # collective over the whole communicator
    group.Free()
    ps.process_set_id = max(_registered) + 1
    _registered[ps.process_set_id] = ps
    if ctx.rank in ps.ranks:
        ps._comm = comm
        ps._ctx = _state.Context(comm)
        ps._ctx.members = list(ps.ranks)
    return ps


def remove_process_set(process_set: ProcessSet) -> bool:
    """Unregister a process set (collective over the global set).  False if unknown."""
    if process_set.process_set_id in (None, 0) or process_set.process_set_id not in _registered:
        return False
    del _registered[process_set.process_set_id]
    if process_set._ctx is not None:
        process_set._ctx.close()
        process_set._comm.Free()
    process_set._ctx = process_set._comm = None
    process_set.process_set_id = None
    return True


def context_of(process_set: ProcessSet | None) -> _state.Context:
    """The context collectives should use for ``process_set`` (None: the global one)."""
    if process_set is None or process_set.ranks is None:
        ctx = _state._ctx
        if ctx is None:
            raise NotInitializedError("ringred is not initialized: call ringred.init() first")
        return ctx
    return process_set._context()


def reset() -> None:
    """Forget every registered set (called by shutdown)."""
    for ps in list(_registered.values()):
        if ps.ranks is not None:
            remove_process_set(ps)


_state.before_shutdown(reset)
