"""Horovod's PyTorch API on ringred: ``import ringred.torch as hvd``.

Scripts written for ``horovod.torch`` run unchanged apart from the import line.  See
docs/migrating-from-horovod.md for what maps one to one and what differs.
"""

from ringred.distributed.compression import Compression
from ringred.process_sets import (
    ProcessSet,
    add_process_set,
    global_process_set,
    remove_process_set,
)

from .basics import (
    ccl_built,
    cross_rank,
    cross_size,
    cuda_built,
    ddl_built,
    gloo_built,
    gloo_enabled,
    init,
    is_homogeneous,
    is_initialized,
    local_rank,
    local_size,
    mpi_built,
    mpi_enabled,
    mpi_threads_supported,
    nccl_built,
    rank,
    rocm_built,
    shutdown,
    size,
)
from .mpi_ops import (
    Adasum,
    Average,
    HorovodInternalError,
    Max,
    Min,
    Product,
    Sum,
    allgather,
    allgather_async,
    allgather_object,
    allreduce,
    allreduce_,
    allreduce_async,
    allreduce_async_,
    alltoall,
    alltoall_async,
    barrier,
    broadcast,
    broadcast_,
    broadcast_async,
    broadcast_async_,
    broadcast_object,
    grouped_allgather,
    grouped_allgather_async,
    grouped_allreduce,
    grouped_allreduce_,
    grouped_allreduce_async,
    grouped_allreduce_async_,
    grouped_reducescatter,
    grouped_reducescatter_async,
    join,
    poll,
    reducescatter,
    reducescatter_async,
    sparse_allreduce_async,
    start_timeline,
    stop_timeline,
    synchronize,
)
from .optimizer import DistributedOptimizer, broadcast_optimizer_state, broadcast_parameters
from .shared import share_gradients, shared_zeros_like

__all__ = [name for name in dir() if not name.startswith("_")]

# Importing ringred.torch registers the "ringred" torch.distributed backend (DDP, FSDP).
from . import distributed as _distributed  # noqa: E402, F401
