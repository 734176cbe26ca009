"""Where this process sits: rank and size, globally and on its host."""

from __future__ import annotations

from . import _state
from ._lib import rr_comm_hierarchical, rr_comm_hosts


def rank() -> int:
    """This process's rank in the ringred communicator."""
    return _state.current().rank


def size() -> int:
    """Number of ranks in the ringred communicator."""
    return _state.current().size


def local_rank() -> int:
    """This process's rank among the ranks on its host."""
    return _state.current().local_rank


def local_size() -> int:
    """Number of ranks on this host."""
    return _state.current().local_size


def transport() -> str:
    """The transport in force: "shm" (shared memory, every rank on this host) or "mpi"."""
    return _state.current().transport


def hosts() -> int:
    """Number of hosts the ranks span (``RINGRED_HOST`` labels when set, else the machines)."""
    return int(rr_comm_hosts(_state.current().handle))


def hierarchical() -> bool:
    """Whether collectives take the two-level plan (``RINGRED_HIERARCHICAL``): shared memory
    inside each host, MPI between hosts."""
    return bool(rr_comm_hierarchical(_state.current().handle))
