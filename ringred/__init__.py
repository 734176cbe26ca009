"""ringred: Horovod-style gradient averaging over MPI with a C ring-allreduce core.

Typical use::

    import ringred
    ringred.init()
    avg = ringred.allreduce(grad)            # average across ranks
    opt = ringred.DistributedOptimizer(opt)  # or wrap an optimizer

Launch with ``mpirun -np N python train.py``.
"""

from __future__ import annotations

from ._state import init, is_initialized, shutdown
from .alltoall import alltoall
from .asyncapi import (
    Handle,
    allgather_async,
    allreduce_async,
    broadcast_async,
    grouped_allreduce,
    grouped_allreduce_async,
    join,
    poll,
    reducescatter_async,
    start_timeline,
    stop_timeline,
    synchronize,
)
from .collectives import allgather, allreduce, barrier, broadcast, reducescatter
from .distributed import (
    Compression,
    DistributedOptimizer,
    broadcast_optimizer_state,
    broadcast_parameters,
)
from .errors import (
    DuplicateNameError,
    InvalidArgumentError,
    MismatchError,
    NotInitializedError,
    PeerError,
    RingredError,
    RingredMPIError,
    RingredTimeoutError,
    StallError,
    StallWarning,
    UnsupportedError,
)
from .objects import allgather_object, broadcast_object
from .ops import Average, Max, Min, Product, ReduceOp, Sum
from .process_sets import ProcessSet, add_process_set, global_process_set, remove_process_set
from .shared import empty, empty_like, zeros
from .topology import local_rank, local_size, rank, size, transport

# The one source of the version: pyproject.toml reads it, and tests/test_settings.py checks
# csrc/ringred.h's RR_VERSION_MAJOR/MINOR/PATCH against it.
__version__ = "0.1.0"

# Subpackages load on first use (``ringred.data.shard(...)`` works after ``import ringred``)
# so that ``import ringred`` does not pay for torch, the optimizers or the benchmarks.  Any
# public module of the package is reachable this way; these are the documented ones.
_SUBMODULES = frozenset({
    "bench", "data", "device", "distributed", "info", "optim", "testing", "torch",
})


def __getattr__(name: str):
    import importlib
    import importlib.util

    if not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _SUBMODULES)

__all__ = [
    "init", "shutdown", "is_initialized", "rank", "size", "local_rank", "local_size", "transport",
    "empty", "zeros", "empty_like",
    "barrier", "alltoall", "allreduce", "broadcast", "allgather", "reducescatter",
    "broadcast_object", "allgather_object",
    "ProcessSet", "add_process_set", "remove_process_set", "global_process_set",
    "ReduceOp", "Average", "Sum", "Min", "Max", "Product",
    "allreduce_async", "broadcast_async", "allgather_async", "reducescatter_async",
    "grouped_allreduce", "grouped_allreduce_async", "Handle", "poll", "synchronize", "join",
    "start_timeline", "stop_timeline",
    "RingredError", "MismatchError", "NotInitializedError", "PeerError", "StallError",
    "DuplicateNameError", "RingredTimeoutError", "StallWarning",
    "UnsupportedError", "InvalidArgumentError", "RingredMPIError", "__version__",
    "Handle", "allreduce_async", "broadcast_async", "grouped_allreduce_async", "poll",
    "synchronize", "join",
    "DistributedOptimizer", "Compression", "broadcast_parameters", "broadcast_optimizer_state",
]
