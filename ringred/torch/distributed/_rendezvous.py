"""Rendezvous under MPI: ``init_process_group`` without MASTER_ADDR / MASTER_PORT / RANK /
WORLD_SIZE when the job was started by ``mpirun``.

torch's ``env://`` handler is wrapped: when ``MASTER_ADDR`` is not set and the process runs
under an MPI launcher, rank and world size come from MPI and rank 0 serves a ``TCPStore`` on
an ephemeral port whose address reaches the others through MPI.  When ``MASTER_ADDR`` is set,
torch's own handler runs unchanged.
"""

from __future__ import annotations

import importlib
import os
import socket
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import torch.distributed as dist

import ringred

# Variables that the common MPI launchers (MPICH/Hydra, Open MPI, Slurm's PMI) set.
_MPI_ENV = ("PMI_RANK", "PMI_SIZE", "PMIX_RANK", "OMPI_COMM_WORLD_RANK", "MPI_LOCALRANKID")


def under_mpi() -> bool:
    """Whether this process was started by an MPI launcher (or MPI is already running)."""
    if any(v in os.environ for v in _MPI_ENV) or ringred.is_initialized():
        return True
    try:
        import sys

        mpi = sys.modules.get("mpi4py.MPI")
        return bool(mpi is not None and mpi.Is_initialized())
    except Exception:  # noqa: BLE001 - no MPI: plainly not under MPI
        return False


def ensure_ringred() -> None:
    """``ringred.init()`` over MPI_COMM_WORLD unless already initialized."""
    if not ringred.is_initialized():
        ringred.init()


def mpi_store(timeout: timedelta) -> tuple[dist.Store, int, int]:
    """A TCPStore served by MPI rank 0 on an ephemeral port; (store, rank, world size)."""
    ensure_ringred()
    from ringred import _state

    comm = _state.current().mpi_comm
    rank, size = comm.Get_rank(), comm.Get_size()
    if rank == 0:
        one_host = ringred.local_size() == ringred.size()
        host = "127.0.0.1" if one_host else socket.gethostname()
        store = dist.TCPStore(host, 0, size, True, timeout, wait_for_workers=False)
        addr = (host, store.port)
    else:
        store, addr = None, None
    addr = comm.bcast(addr, root=0)
    if store is None:
        store = dist.TCPStore(addr[0], addr[1], size, False, timeout)
    return store, rank, size


def _wrap(original: Callable[..., Iterator[Any]]) -> Callable[..., Iterator[Any]]:
    def handler(url: str, timeout: timedelta = timedelta(minutes=30),
                **kwargs: Any) -> Iterator[Any]:
        if os.environ.get("MASTER_ADDR") or not under_mpi():
            yield from original(url, timeout=timeout, **kwargs)
            return
        store, rank, size = mpi_store(timeout)
        query = dict(p.split("=", 1) for p in (url.split("?", 1)[1:] or [""])[0].split("&")
                     if "=" in p)
        want_rank = int(query.get("rank", os.environ.get("RANK", rank)))
        want_size = int(query.get("world_size", os.environ.get("WORLD_SIZE", size)))
        if (want_rank, want_size) != (rank, size):
            raise ValueError(
                f"init_process_group: rank {want_rank} / world_size {want_size} were asked for, "
                f"but MPI says rank {rank} of {size}; under mpirun leave them unset (they "
                "come from MPI) or make them the MPI ranks")
        yield store, rank, size
        raise RuntimeError("the MPI rendezvous cannot be repeated")

    handler._ringred = True  # type: ignore[attr-defined]
    return handler


def install() -> None:
    """Make ``env://`` fall back to MPI when MASTER_ADDR is unset (idempotent)."""
    _rdzv = importlib.import_module("torch.distributed.rendezvous")
    current = _rdzv._rendezvous_handlers.get("env")
    if current is None or getattr(current, "_ringred", False):
        return
    _rdzv._rendezvous_handlers["env"] = _wrap(current)
