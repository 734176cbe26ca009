"""A ``torch.distributed`` backend named ``"ringred"``: DDP and FSDP on ringred's transports.

::

    import ringred.torch.distributed  # registers the backend (so does ``import ringred.torch``)
    import torch.distributed as dist

    dist.init_process_group("ringred")          # under mpirun: rank and size come from MPI
    model = torch.nn.parallel.DistributedDataParallel(model)

Under ``mpirun`` no MASTER_ADDR, MASTER_PORT, RANK or WORLD_SIZE is needed.  With torch's
own rendezvous (``env://``, ``tcp://``, or ``store=`` with ``rank=`` / ``world_size=``) the
ranks must be the MPI ranks, otherwise ``init_process_group`` raises ValueError.
``new_group(ranks)`` makes a ringred process set over those ranks.  See
docs/torch-distributed.md.
"""

from __future__ import annotations

from typing import Any

import torch.distributed as dist

from ._pg import RingredProcessGroup
from ._rendezvous import ensure_ringred, install

__all__ = ["RingredProcessGroup", "BACKEND", "register"]

BACKEND = "ringred"
_groups: list[RingredProcessGroup] = []


def _create(opts: Any, _backend_options: Any = None) -> RingredProcessGroup:
    """torch's backend factory (extended API): one ringred process set per torch group."""
    from mpi4py import MPI

    from ringred import _state
    from ringred.process_sets import ProcessSet

    ensure_ringred()
    ctx = _state.current()
    world = ctx.mpi_comm
    members = list(opts.global_ranks_in_group) or list(range(opts.group_size))
    rank, size = opts.group_rank, opts.group_size
    if len(members) != size:
        raise ValueError(f"ringred backend: group of {size} ranks but {len(members)} listed")
    if not members or max(members) >= ctx.size:
        raise ValueError(f"ringred backend: torch's ranks {members} are not MPI ranks "
                         f"(MPI has {ctx.size})")
    if members[rank] != ctx.rank:
        raise ValueError(
            f"ringred backend: torch says this process is rank {members[rank]} of "
            f"{ctx.size if not opts.global_ranks_in_group else size}, but it is MPI rank "
            f"{ctx.rank} of {ctx.size}; the torch ranks must be the MPI ranks (under mpirun "
            "leave RANK / WORLD_SIZE / MASTER_ADDR unset, or set them from MPI)")
    if not opts.global_ranks_in_group and size != ctx.size:
        raise ValueError(f"ringred backend: world_size {size} but MPI has {ctx.size} ranks")
    group = world.Get_group().Incl(members)
    comm = world.Create_group(group, tag=77)  # collective over the members only
    group.Free()
    if comm == MPI.COMM_NULL:  # pragma: no cover - members[rank] == ctx.rank above
        raise ValueError("ringred backend: this rank is not in the group")
    ps = ProcessSet(members)
    ps.process_set_id = -1 - len(_groups)  # private: not in ringred's registry
    ps._comm = comm
    ps._ctx = _state.Context(comm)
    ps._ctx.members = list(members)  # root ranks given to ringred are global ranks
    pg = RingredProcessGroup(ps, rank, size, _tag(opts.group_id), str(opts.group_id))
    if not _groups:
        ctx.on_close(_close_all)
    _groups.append(pg)
    return pg


def _tag(group_id: Any) -> str:
    """The prefix of the group's engine names: from torch's group name, which is the same on
    every member (a count of groups local to this rank would not be, for subgroups)."""
    s = "".join(c if c.isalnum() else "_" for c in str(group_id or ""))[:64]
    return f"tpg_{s}"


def _close_all() -> None:
    """Close every group's context (at ringred shutdown; collective like the creation)."""
    from ._work import stop_completer

    stop_completer()
    while _groups:
        pg = _groups.pop()
        ps = pg.process_set
        if ps._ctx is not None:
            ps._ctx.close()
            ps._comm.Free()
            ps._ctx = ps._comm = None


def register() -> None:
    """Register the ``ringred`` backend with torch.distributed (idempotent)."""
    install()
    if BACKEND.upper() in dist.Backend._plugins:
        return
    dist.Backend.register_backend(BACKEND, _create, extended_api=True, devices=["cpu"])


register()
