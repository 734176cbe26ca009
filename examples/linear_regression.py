"""The article's linear regression, data-parallel: y = θᵀx, mean squared error, plain
gradient descent (lr 0.1, θ₀ = 0).  Each rank holds a shard of a synthetic data set;
gradients are averaged with ringred.allreduce, so every rank takes the same step.

    mpirun -np 2 python examples/linear_regression.py
"""

from __future__ import annotations

import argparse

import numpy as np

import ringred


def make_data(n_samples: int, n_features: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic regression problem with known coefficients (same on every rank)."""
    rng = np.random.default_rng(seed)
    theta_true = np.arange(1, n_features + 1, dtype=np.float64) / n_features
    x = rng.normal(size=(n_samples, n_features))
    y = x @ theta_true + 0.01 * rng.normal(size=n_samples)
    return x, y


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--samples", type=int, default=4096)
    p.add_argument("--features", type=int, default=8)
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--lr", type=float, default=0.1)
    args = p.parse_args()

    ringred.init()
    rank, size = ringred.rank(), ringred.size()
    x, y = make_data(args.samples, args.features)
    mine = np.arange(rank, args.samples, size)  # this rank's shard
    xs, ys = x[mine], y[mine]
    theta = np.zeros(args.features)
    for epoch in range(args.epochs):
        err = xs @ theta - ys
        grad = 2.0 * xs.T @ err / len(ys)  # gradient of the local MSE
        grad = ringred.allreduce(grad, name="grad")  # average over ranks
        theta -= args.lr * grad
        loss = ringred.allreduce(np.array([np.mean(err**2)]), name="loss")[0]
        if rank == 0 and (epoch % 10 == 0 or epoch == args.epochs - 1):
            print(f"epoch {epoch:3d}  loss {loss:.6f}")
    same = len(set(ringred.allgather_object(theta.tobytes()))) == 1
    if rank == 0:
        print("fitted θ:", np.array2string(theta, precision=4))
        print(f"θ identical on all {size} ranks: {same}")
    ringred.shutdown()
    if not same:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
