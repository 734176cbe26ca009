"""The article's linear regression with three optimizers: gradient descent, momentum and Adam,
each wrapped in ringred.DistributedOptimizer.

y = θᵀx, mean squared error, θ₀ = 0.  Each rank holds a shard of a synthetic data set
(ringred.data.shard); the optimizer averages the gradients across ranks before every update,
so all ranks take the same steps and end with the same θ.

    mpirun -np 2 python examples/linear_regression_optim.py
"""

from __future__ import annotations

import argparse

import numpy as np

import ringred
from ringred.data import shard
from ringred.optim import SGD, Adam

OPTIMIZERS = {
    "gd": lambda params, lr: SGD(params, lr=lr),
    "momentum": lambda params, lr: SGD(params, lr=lr, momentum=0.9),
    "adam": lambda params, lr: Adam(params, lr=lr),
}
DEFAULT_LR = {"gd": 0.1, "momentum": 0.02, "adam": 0.05}


def make_data(n_samples: int, n_features: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray,
                                                                       np.ndarray]:
    """A synthetic regression problem with known coefficients (same on every rank)."""
    rng = np.random.default_rng(seed)
    theta_true = np.arange(1, n_features + 1, dtype=np.float64) / n_features
    x = rng.normal(size=(n_samples, n_features))
    y = x @ theta_true + 0.01 * rng.normal(size=n_samples)
    return x, y, theta_true


def train(name: str, xs: np.ndarray, ys: np.ndarray, epochs: int, lr: float,
          verbose: bool) -> np.ndarray:
    """Full-batch training of θ on this rank's shard; returns θ."""
    theta = np.zeros(xs.shape[1])
    opt = ringred.DistributedOptimizer(OPTIMIZERS[name]({"theta": theta}, lr))
    for epoch in range(epochs):
        err = xs @ theta - ys
        opt.step({"theta": 2.0 * xs.T @ err / len(ys)})  # averaged over ranks, then applied
        loss = ringred.allreduce(np.array([np.mean(err**2)]), name="loss")[0]
        if verbose and (epoch % 20 == 0 or epoch == epochs - 1):
            print(f"  {name:8s} epoch {epoch:3d}  loss {loss:.6f}", flush=True)
    return theta


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--samples", type=int, default=4096)
    p.add_argument("--features", type=int, default=8)
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--optimizers", default="gd,momentum,adam")
    args = p.parse_args()

    ringred.init()
    rank, size = ringred.rank(), ringred.size()
    x, y, theta_true = make_data(args.samples, args.features)
    mine = shard(args.samples, rank, size)
    xs, ys = x[mine], y[mine]
    ok = True
    for name in args.optimizers.split(","):
        if rank == 0:
            print(f"{name} (lr {DEFAULT_LR[name]}) on {size} ranks:", flush=True)
        theta = train(name, xs, ys, args.epochs, DEFAULT_LR[name], rank == 0)
        same = len(set(ringred.allgather_object(theta.tobytes()))) == 1
        ok &= same
        if rank == 0:
            dist = np.linalg.norm(theta - theta_true)
            print(f"  |θ - θ*| = {dist:.2e}; θ identical on all {size} ranks: {same}", flush=True)
    ringred.shutdown()
    if not ok:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
