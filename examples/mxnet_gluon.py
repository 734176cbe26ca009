"""The MXNet Gluon distributed-training article's script, on ringred.

A Gluon MLP (``Dense(10, activation='relu')`` -> ``Dense(1)``) fits a noisy linear
function; every rank reads its own shard of the data and calls ``trainer.step(batch_size)``
with its local batch size.  It trains once each with gradient descent, momentum and Adam
(learning rate 0.1) and checks that the ranks end with identical parameters.

    mpirun -np 2 python examples/mxnet_gluon.py [--epochs N] [--kvstore]

By default the trainer is ``ringred.mxnet.DistributedTrainer`` (gradients averaged, as in
Horovod).  With ``--kvstore`` it is the article's own line, ``gluon.Trainer(...,
kvstore='dist_sync')``, with one word changed: ``kvstore='dist_ringred'`` (gradients summed
across ranks, as with ``dist_sync``).
"""

from __future__ import annotations

import argparse
import hashlib

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon

import ringred
import ringred.mxnet as rmx
from ringred.data import shard

OPTIMIZERS = {
    "gd": ("sgd", {"learning_rate": 0.1}),
    "momentum": ("sgd", {"learning_rate": 0.1, "momentum": 0.9}),
    "adam": ("adam", {"learning_rate": 0.1}),
}


def make_data(n: int, din: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """y = x.w + 1 + noise, the same on every rank (seed 0)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, din)).astype(np.float32)
    w = rng.normal(size=(din, 1)).astype(np.float32)
    y = x @ w + 1.0 + 0.1 * rng.normal(size=(n, 1)).astype(np.float32)
    return x, y


def make_net() -> gluon.nn.Sequential:
    net = gluon.nn.Sequential()
    with net.name_scope():
        net.add(gluon.nn.Dense(10, activation="relu"))
        net.add(gluon.nn.Dense(1))
    return net


def train(name: str, x: np.ndarray, y: np.ndarray, args: argparse.Namespace) -> bool:
    rank, size = ringred.rank(), ringred.size()
    optimizer, params = OPTIMIZERS[name]
    mx.random.seed(1000 + rank)  # a different initialisation on every rank ...
    net = make_net()
    net.initialize(mx.init.Xavier())
    net(mx.nd.array(x[:1]))  # shapes are known after one forward pass
    if args.kvstore:
        # ... which the kvstore replaces by rank 0's at the first step, like dist_sync
        trainer = gluon.Trainer(net.collect_params(), optimizer, dict(params),
                                kvstore="dist_ringred")
    else:
        rmx.broadcast_parameters(net.collect_params(), root_rank=0)  # ... made rank 0's
        trainer = rmx.DistributedTrainer(net.collect_params(), optimizer, dict(params))
    loss_fn = gluon.loss.L2Loss()
    for epoch in range(args.epochs):
        mine = shard(len(y), rank, size, seed=0, epoch=epoch, drop_last=True)
        total, batches = 0.0, 0
        for start in range(0, len(mine) - args.batch + 1, args.batch):
            idx = mine[start:start + args.batch]
            data, label = mx.nd.array(x[idx]), mx.nd.array(y[idx])
            with autograd.record():
                loss = loss_fn(net(data), label)
            loss.backward()
            trainer.step(args.batch)  # local batch size, as in the article
            total += float(loss.mean().asscalar())
            batches += 1
        mean = float(ringred.allreduce(np.array([total / batches]), name="loss")[0])
        if rank == 0:
            print(f"{name} (lr {params['learning_rate']}) epoch {epoch}  loss {mean:.5f}",
                  flush=True)
    blob = b"".join(p.data().asnumpy().tobytes() for p in net.collect_params().values())
    same = len(set(ringred.allgather_object(hashlib.sha1(blob).hexdigest()))) == 1
    if rank == 0:
        print(f"{name}: parameters identical on all {size} ranks: {same}", flush=True)
    return same


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--batch", type=int, default=32, help="mini-batch per rank")
    ap.add_argument("--samples", type=int, default=4096)
    ap.add_argument("--kvstore", action="store_true",
                    help="gluon.Trainer(..., kvstore='dist_ringred') instead of "
                         "ringred.mxnet.DistributedTrainer")
    args = ap.parse_args()
    ringred.init()
    x, y = make_data(args.samples)
    if ringred.rank() == 0:
        how = "gluon.Trainer(kvstore='dist_ringred')" if args.kvstore else "DistributedTrainer"
        print(f"{ringred.size()} ranks x {args.batch} per batch, {args.samples} samples; "
              f"{how}", flush=True)
    ok = all([train(name, x, y, args) for name in OPTIMIZERS])
    ringred.shutdown()
    if not ok:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
