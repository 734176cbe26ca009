"""init/shutdown, topology and capability queries with Horovod's names."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import ringred
from ringred import _state
from ringred.process_sets import ProcessSet, add_process_set

_cross: dict[str, int] = {}

# Horovod's environment variables and their ringred equivalents: a job script written for
# Horovod keeps working (an explicitly set RINGRED_* variable wins).
HOROVOD_ENV = {
    "HOROVOD_FUSION_THRESHOLD": "RINGRED_FUSION_THRESHOLD",
    "HOROVOD_CACHE_CAPACITY": "RINGRED_CACHE_CAPACITY",
    "HOROVOD_STALL_CHECK_TIME_SECONDS": "RINGRED_STALL_CHECK_SECONDS",
    "HOROVOD_STALL_SHUTDOWN_TIME_SECONDS": "RINGRED_STALL_SHUTDOWN_SECONDS",
    "HOROVOD_TIMELINE": "RINGRED_TIMELINE",
    "HOROVOD_HIERARCHICAL_ALLREDUCE": "RINGRED_HIERARCHICAL",
}


def _map_horovod_env() -> None:
    for hv, rr in HOROVOD_ENV.items():
        if hv in os.environ and rr not in os.environ:
            os.environ[rr] = os.environ[hv]
    if os.environ.get("HOROVOD_STALL_CHECK_DISABLE") == "1":
        os.environ.setdefault("RINGRED_STALL_CHECK_SECONDS", "0")


def init(comm: Any = None, process_sets: Sequence[ProcessSet] | None = None) -> None:
    """Initialize over ``comm`` (mpi4py communicator, or a list of global ranks).

    HOROVOD_* tuning variables are honoured (see docs/migrating-from-horovod.md).
    """
    _map_horovod_env()
    if isinstance(comm, list | tuple):
        from mpi4py import MPI

        ranks = sorted(comm)
        world = MPI.COMM_WORLD
        group = world.Get_group().Incl(ranks)
        comm = world.Create(group)
        group.Free()
        if comm == MPI.COMM_NULL:
            raise ValueError(f"rank {world.Get_rank()} is not in init's rank list {ranks}")
    ringred.init(comm)
    # The engine runs from init on, as Horovod's background thread does: collectives and
    # join() then work together whatever each rank calls first (starting it is collective).
    _state.current().get_engine()
    _cross.clear()
    for ps in process_sets or ():
        add_process_set(ps)


def shutdown() -> None:
    """Shut ringred down."""
    _cross.clear()
    ringred.shutdown()


def is_initialized() -> bool:
    """Whether init() has been called."""
    return ringred.is_initialized()


def size() -> int:
    """Number of ranks."""
    return ringred.size()


def rank() -> int:
    """This process's rank."""
    return ringred.rank()


def local_size() -> int:
    """Ranks on this host."""
    return ringred.local_size()


def local_rank() -> int:
    """Rank on this host."""
    return ringred.local_rank()


def _cross_info() -> dict[str, int]:
    if "rank" not in _cross:
        ctx = _state.current()
        sub = ctx.mpi_comm.Split(color=ctx.local_rank, key=ctx.rank)
        _cross.update(rank=sub.Get_rank(), size=sub.Get_size())
        sub.Free()
    return _cross


def cross_size() -> int:
    """Number of hosts holding a rank with this local rank (the 'cross' communicator)."""
    return _cross_info()["size"]


def cross_rank() -> int:
    """This host's index among the hosts (rank in the cross communicator)."""
    return _cross_info()["rank"]


def is_homogeneous() -> bool:
    """Whether every host runs the same number of ranks (collective on first call)."""
    if "homogeneous" not in _cross:
        ctx = _state.current()
        _cross["homogeneous"] = int(len(set(ctx.mpi_comm.allgather(ctx.local_size))) == 1)
    return bool(_cross["homogeneous"])


def mpi_threads_supported() -> bool:
    """Whether MPI runs with MPI_THREAD_MULTIPLE."""
    from mpi4py import MPI

    return MPI.Query_thread() == MPI.THREAD_MULTIPLE


def mpi_built() -> bool:
    """ringred always runs over MPI."""
    return True


def mpi_enabled() -> bool:
    """ringred always runs over MPI."""
    return True


def gloo_built() -> bool:
    """No Gloo controller in ringred."""
    return False


def gloo_enabled() -> bool:
    """No Gloo controller in ringred."""
    return False


def nccl_built() -> bool:
    """ringred does not link NCCL (GPU buffers are staged through host memory)."""
    return False


def ccl_built() -> bool:
    """No oneCCL in ringred."""
    return False


def ddl_built() -> bool:
    """No IBM DDL in ringred."""
    return False


def cuda_built() -> bool:
    """GPU buffers are supported when a CUDA driver is present at run time (dlopen)."""
    return True


def rocm_built() -> bool:
    """No ROCm support."""
    return False
