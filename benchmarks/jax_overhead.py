"""Per-step cost of ringred.jax against JAX's own single-process step (examples/jax_mlp.py's
MLP and Adam, the same per-rank batch), all variants interleaved in one run.

    mpirun -np 2 python benchmarks/jax_overhead.py [--rounds 20] [--steps 20]

Variants: ``local`` (the plain jitted step, no communication: the baseline), ``in-jit``
(``distributed(adam)`` inside the jitted step: an ordered io_callback), ``outside-jit``
(jitted gradient, eager ``allreduce_tree``, jitted update) and ``allreduce`` (the eager
pytree allreduce of the gradients alone).  Rank 0 prints medians over every step."""

from __future__ import annotations

import argparse
import importlib.util
import time
from pathlib import Path

import jax
import numpy as np
import optax

import ringred
import ringred.jax as rj
from ringred.jax.optax import distributed

_spec = importlib.util.spec_from_file_location(
    "jax_mlp", Path(__file__).resolve().parent.parent / "examples" / "jax_mlp.py")
ex = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ex)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=64)
    args = ap.parse_args()
    ringred.init()
    x, y = ex.make_data(args.batch * 4, seed=1)
    params = rj.broadcast_tree(ex.init_params(0))
    grads = jax.grad(ex.loss_fn)(params, x[:args.batch], y[:args.batch])

    def variant(tx, outside):
        step = ex.make_step(tx, outside)
        state = tx.init(params)
        return [step, params, state]

    runs = {"local": variant(optax.adam(1e-3), False),
            "in-jit": variant(distributed(optax.adam(1e-3)), False),
            "outside-jit": variant(optax.adam(1e-3), True)}
    times: dict[str, list[float]] = {k: [] for k in [*runs, "allreduce"]}
    for r in range(args.rounds + 1):  # round 0 compiles and warms up
        for name, v in runs.items():
            for i in range(args.steps):
                lo = (i % 4) * args.batch
                t0 = time.perf_counter()
                v[1], v[2], loss = v[0](v[1], v[2], x[lo:lo + args.batch], y[lo:lo + args.batch])
                loss.block_until_ready()
                if r:
                    times[name].append(time.perf_counter() - t0)
        for _ in range(args.steps):
            t0 = time.perf_counter()
            jax.block_until_ready(rj.allreduce_tree(grads))
            if r:
                times["allreduce"].append(time.perf_counter() - t0)
    if ringred.rank() == 0:
        base = float(np.median(times["local"]))
        n_params = sum(v.size for v in jax.tree.leaves(params))
        print(f"{ringred.size()} ranks, MLP with {n_params} float32 parameters, batch "
              f"{args.batch} per rank, {args.rounds} rounds x {args.steps} steps, medians")
        print(f"{'variant':<12} {'ms/step':>9} {'vs local':>9} {'overhead ms':>12}")
        for name, ts in times.items():
            m = float(np.median(ts))
            print(f"{name:<12} {m * 1e3:9.3f} {m / base:9.2f} {(m - base) * 1e3:12.3f}")
    ringred.shutdown()


if __name__ == "__main__":
    main()
