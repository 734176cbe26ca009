"""The article's two-layer perceptron on NumPy: Dense(10, ReLU) -> Dense(1), mean squared
error, manual backpropagation, trained data-parallel with ringred.optim + DistributedOptimizer.

Every rank starts from its own random weights; broadcast_parameters makes them rank 0's.
Each epoch every rank reads its own shard of a reshuffled data set (ringred.data.shard) in
mini-batches; DistributedOptimizer averages each mini-batch's gradients across ranks.
With --average-every K the ranks instead train on their own and average the weights every
K steps (the article's asynchronous mode).

    mpirun -np 2 python examples/mlp_numpy.py [--optimizer adam|momentum|gd]
"""

from __future__ import annotations

import argparse

import numpy as np

import ringred
from ringred.data import shard
from ringred.optim import SGD, Adam

HIDDEN = 10


def make_data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """y = sin(x0) + 0.5·x1² + noise on x uniform in [-2, 2]² (same on every rank)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2.0, 2.0, size=(n, 2))
    y = np.sin(x[:, :1]) + 0.5 * x[:, 1:] ** 2 + 0.05 * rng.normal(size=(n, 1))
    return x, y


def init_params(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "W1": rng.normal(size=(2, HIDDEN)) * np.sqrt(2.0 / 2),
        "b1": np.zeros(HIDDEN),
        "W2": rng.normal(size=(HIDDEN, 1)) * np.sqrt(2.0 / HIDDEN),
        "b2": np.zeros(1),
    }


def forward_backward(p: dict[str, np.ndarray], x: np.ndarray,
                     y: np.ndarray) -> tuple[float, dict[str, np.ndarray]]:
    """Loss and gradients of mean((MLP(x) - y)²)."""
    h = x @ p["W1"] + p["b1"]
    a = np.maximum(h, 0.0)
    out = a @ p["W2"] + p["b2"]
    diff = out - y
    loss = float(np.mean(diff**2))
    dout = 2.0 * diff / len(x)
    da = dout @ p["W2"].T
    dh = da * (h > 0)
    return loss, {"W1": x.T @ dh, "b1": dh.sum(0), "W2": a.T @ dout, "b2": dout.sum(0)}


def make_optimizer(name: str, params: dict[str, np.ndarray]):
    if name == "adam":
        return Adam(params, lr=0.01)
    if name == "momentum":
        return SGD(params, lr=0.01, momentum=0.9)
    return SGD(params, lr=0.05)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--samples", type=int, default=4000)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--batch", type=int, default=32, help="mini-batch per rank")
    ap.add_argument("--optimizer", choices=["adam", "momentum", "gd"], default="adam")
    ap.add_argument("--average-every", type=int, default=None,
                    help="average weights every K steps instead of gradients every step")
    args = ap.parse_args()

    ringred.init()
    rank, size = ringred.rank(), ringred.size()
    x, y = make_data(args.samples)
    params = init_params(seed=1 + rank)  # different on every rank ...
    ringred.broadcast_parameters(params, root_rank=0)  # ... until rank 0's are broadcast
    opt = ringred.DistributedOptimizer(make_optimizer(args.optimizer, params),
                                       average_every=args.average_every)
    if rank == 0:
        mode = (f"weights averaged every {args.average_every} steps" if args.average_every
                else "gradients averaged every step")
        print(f"MLP 2-{HIDDEN}-1, {args.optimizer}, {size} ranks, {mode}", flush=True)
    for epoch in range(args.epochs):
        mine = shard(args.samples, rank, size, seed=0, epoch=epoch, drop_last=True)
        losses = []
        for start in range(0, len(mine) - args.batch + 1, args.batch):
            idx = mine[start:start + args.batch]
            loss, grads = forward_backward(params, x[idx], y[idx])
            opt.step(grads)
            losses.append(loss)
        mean_loss = ringred.allreduce(np.array([np.mean(losses)]), name="loss")[0]
        if rank == 0 and (epoch % 5 == 0 or epoch == args.epochs - 1):
            print(f"epoch {epoch:3d}  loss {mean_loss:.5f}", flush=True)
    if args.average_every:
        opt.average_parameters()  # end on common weights
    full_loss, _ = forward_backward(params, x, y)
    same = all(len(set(ringred.allgather_object(v.tobytes()))) == 1 for v in params.values())
    if rank == 0:
        print(f"loss on the whole data set {full_loss:.5f}; weights identical on all {size} "
              f"ranks: {same}", flush=True)
    ringred.shutdown()
    if not same:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
