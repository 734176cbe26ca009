"""ringred for MXNet 1.9 Gluon: ``DistributedTrainer``, ``broadcast_parameters``,
collectives on ``mx.nd`` arrays, and a ``dist_ringred`` kvstore.

    import mxnet as mx, ringred, ringred.mxnet as rmx
    ringred.init()
    net.initialize(); net(x)                                 # shapes known
    rmx.broadcast_parameters(net.collect_params(), root_rank=0)
    trainer = rmx.DistributedTrainer(net.collect_params(), "adam", {"learning_rate": 0.1})
    ...
    trainer.step(batch_size)       # gradients averaged across ranks, then the update

Or keep ``gluon.Trainer`` and change one word: ``kvstore="dist_sync"`` becomes
``kvstore="dist_ringred"`` (importing ``ringred.mxnet`` registers it).  CPU NDArrays only.
Needs ``mxnet`` (1.9.1; NumPy < 1.24); ringred itself does not.
"""

from __future__ import annotations

try:
    import mxnet  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised only without mxnet
    raise ImportError("ringred.mxnet needs MXNet: pip install mxnet==1.9.1 'numpy<1.24' "
                      "(Python <= 3.11)") from exc

from ..ops import Average, Sum
from .kvstore import DistRingred
from .ops import allgather, allreduce, allreduce_, broadcast, broadcast_
from .trainer import DistributedTrainer, broadcast_parameters

__all__ = ["DistributedTrainer", "broadcast_parameters", "allreduce", "allreduce_",
           "broadcast", "broadcast_", "allgather", "DistRingred", "Average", "Sum"]
