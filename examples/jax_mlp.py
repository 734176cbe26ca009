"""A JAX/optax MLP classifier trained data-parallel with ringred.jax.

Data: ten Gaussian clusters in 32 dimensions (generated from a fixed seed, the same on
every rank: nothing is downloaded).  Model: a 32-128-128-10 MLP.  Every rank builds the
parameters from its own seed; ``broadcast_tree`` makes them rank 0's.  Each epoch every
rank trains on its own shard (``ringred.data.shard``); ``ringred.jax.optax.distributed``
averages the gradients across ranks before Adam.

By default the whole step (gradients, averaging, update) is one ``jax.jit`` program, the
averaging an ordered ``io_callback`` inside it; ``--outside-jit`` jits the gradient and the
update separately and averages between them.

    mpirun -np 2 python examples/jax_mlp.py [--epochs N] [--outside-jit]
"""

from __future__ import annotations

import argparse
import hashlib
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import ringred
import ringred.jax as rj
from ringred.data import shard
from ringred.jax.optax import distributed

DIN, HIDDEN, CLASSES = 32, 128, 10


def make_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n points of ten Gaussian clusters (centres from seed 0, points from ``seed``)."""
    centres = np.random.default_rng(0).normal(size=(CLASSES, DIN)) * 1.5
    rng = np.random.default_rng(seed)
    y = rng.integers(0, CLASSES, n)
    x = centres[y] + rng.normal(size=(n, DIN)) * 2.0
    return x.astype(np.float32), y.astype(np.int32)


def init_params(seed: int) -> dict[str, jax.Array]:
    keys = jax.random.split(jax.random.PRNGKey(seed), 3)
    sizes = [(DIN, HIDDEN), (HIDDEN, HIDDEN), (HIDDEN, CLASSES)]
    params = {}
    for i, (k, (a, b)) in enumerate(zip(keys, sizes, strict=True)):
        params[f"w{i}"] = jax.random.normal(k, (a, b), jnp.float32) * jnp.sqrt(2.0 / a)
        params[f"b{i}"] = jnp.zeros(b, jnp.float32)
    return params


def forward(params: dict[str, jax.Array], x: jax.Array) -> jax.Array:
    h = jax.nn.relu(x @ params["w0"] + params["b0"])
    h = jax.nn.relu(h @ params["w1"] + params["b1"])
    return h @ params["w2"] + params["b2"]


def loss_fn(params: dict[str, jax.Array], x: jax.Array, y: jax.Array) -> jax.Array:
    return optax.softmax_cross_entropy_with_integer_labels(forward(params, x), y).mean()


def make_step(tx: optax.GradientTransformation, outside_jit: bool):
    """One training step ``(params, state, x, y) -> (params, state, loss)``."""
    if not outside_jit:
        @jax.jit
        def step(params, state, x, y):
            loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
            updates, state = tx.update(grads, state, params)  # io_callback inside
            return optax.apply_updates(params, updates), state, loss
        return step

    grad_fn = jax.jit(jax.value_and_grad(loss_fn))

    @jax.jit
    def apply(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    def step(params, state, x, y):
        loss, grads = grad_fn(params, x, y)
        grads = rj.allreduce_tree(grads, name="grads")  # eager, between the two programs
        params, state = apply(params, state, grads)
        return params, state, loss
    return step


def accuracy(params: dict[str, jax.Array], x: np.ndarray, y: np.ndarray) -> float:
    """Test accuracy: each rank scores a part, the counts are summed across ranks."""
    part = np.array_split(np.arange(len(y)), ringred.size())[ringred.rank()]
    correct = int((np.asarray(forward(params, x[part])).argmax(1) == y[part]).sum())
    total = ringred.allreduce(np.array([correct, len(part)], np.int64), op=ringred.Sum,
                              name="accuracy")
    return float(total[0]) / float(total[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--batch", type=int, default=64, help="mini-batch per rank")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--samples", type=int, default=8192)
    ap.add_argument("--outside-jit", action="store_true",
                    help="average between two jitted programs instead of inside one")
    ap.add_argument("--min-accuracy", type=float, default=0.0,
                    help="exit non-zero if the final test accuracy is below this")
    args = ap.parse_args()

    ringred.init()
    rank, size = ringred.rank(), ringred.size()
    x_train, y_train = make_data(args.samples, seed=1)
    x_test, y_test = make_data(2048, seed=2)

    params = rj.broadcast_tree(init_params(1000 + rank))  # every rank starts from rank 0's
    if args.outside_jit:
        # the averaging happens between the programs: the wrapped optimizer is plain adam
        tx = optax.adam(args.lr)
    else:
        tx = distributed(optax.adam(args.lr))
    state = tx.init(params)
    step = make_step(tx, args.outside_jit)
    if rank == 0:
        n_params = sum(v.size for v in jax.tree.leaves(params))
        print(f"clusters: {len(y_train)} train / {len(y_test)} test points; MLP with {n_params} "
              f"parameters; adam; {size} ranks x {args.batch} per batch; averaging "
              f"{'between jitted programs' if args.outside_jit else 'inside jit (io_callback)'}",
              flush=True)

    times = []
    for epoch in range(args.epochs):
        mine = shard(len(y_train), rank, size, seed=0, epoch=epoch, drop_last=True)
        losses = []
        for start in range(0, len(mine) - args.batch + 1, args.batch):
            idx = mine[start:start + args.batch]
            t0 = time.perf_counter()
            params, state, loss = step(params, state, x_train[idx], y_train[idx])
            loss.block_until_ready()
            times.append(time.perf_counter() - t0)
            losses.append(float(loss))
        mean_loss = float(ringred.allreduce(np.array([np.mean(losses)]), name="loss")[0])
        acc = accuracy(params, x_test, y_test)
        if rank == 0:
            print(f"epoch {epoch}  train loss {mean_loss:.4f}  test accuracy {acc:.3f}  "
                  f"median step {np.median(times[1:] or times) * 1e3:.2f} ms", flush=True)

    blob = b"".join(np.asarray(v).tobytes() for v in jax.tree.leaves(params))
    same = len(set(ringred.allgather_object(hashlib.sha1(blob).hexdigest()))) == 1
    acc = accuracy(params, x_test, y_test)
    if rank == 0:
        print(f"final test accuracy {acc:.3f}; parameters identical on all {size} ranks: "
              f"{same}", flush=True)
    ringred.shutdown()
    if not same:
        raise SystemExit(1)
    if acc < args.min_accuracy:
        raise SystemExit(f"test accuracy {acc:.3f} is below --min-accuracy {args.min_accuracy}")


if __name__ == "__main__":
    main()
