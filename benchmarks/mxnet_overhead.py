"""Per-step cost of ringred.mxnet against MXNet's own single-process step
(examples/mxnet_gluon.py's network, Adam, the same per-rank batch), interleaved in one run.

    mpirun -np 2 python benchmarks/mxnet_overhead.py [--rounds 20] [--steps 20]

Variants: ``local`` (``gluon.Trainer(kvstore=None)``, no communication: the baseline),
``DistributedTrainer`` and ``kvstore`` (``gluon.Trainer(kvstore='dist_ringred')``); each
step is forward, backward and ``trainer.step``, timed until the parameters are written.
Rank 0 prints medians over every step."""

from __future__ import annotations

import argparse
import importlib.util
import time
from pathlib import Path

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon

import ringred
import ringred.mxnet as rmx

_spec = importlib.util.spec_from_file_location(
    "mxnet_gluon", Path(__file__).resolve().parent.parent / "examples" / "mxnet_gluon.py")
ex = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ex)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--hidden", type=int, default=10,
                    help="width of the first layer (the article's is 10)")
    args = ap.parse_args()
    ringred.init()
    x, y = ex.make_data(args.batch)
    data, label = mx.nd.array(x), mx.nd.array(y)
    loss_fn = gluon.loss.L2Loss()

    def setup(kind: str):
        mx.random.seed(0)
        net = gluon.nn.Sequential()
        with net.name_scope():
            net.add(gluon.nn.Dense(args.hidden, activation="relu"))
            net.add(gluon.nn.Dense(1))
        net.initialize(mx.init.Xavier())
        net(data)
        hp = {"learning_rate": 1e-3}
        if kind == "local":
            tr = gluon.Trainer(net.collect_params(), "adam", hp, kvstore=None)
        elif kind == "kvstore":
            tr = gluon.Trainer(net.collect_params(), "adam", hp, kvstore="dist_ringred")
        else:
            tr = rmx.DistributedTrainer(net.collect_params(), "adam", hp)
        return net, tr

    runs = {k: setup(k) for k in ("local", "DistributedTrainer", "kvstore")}
    times: dict[str, list[float]] = {k: [] for k in runs}
    for r in range(args.rounds + 1):  # round 0 warms up
        for name, (net, tr) in runs.items():
            for _ in range(args.steps):
                t0 = time.perf_counter()
                with autograd.record():
                    loss = loss_fn(net(data), label)
                loss.backward()
                tr.step(args.batch)
                mx.nd.waitall()
                if r:
                    times[name].append(time.perf_counter() - t0)
    if ringred.rank() == 0:
        base = float(np.median(times["local"]))
        n_params = sum(p.data().size for p in runs["local"][0].collect_params().values())
        print(f"{ringred.size()} ranks, Dense({args.hidden}, relu) -> Dense(1) with {n_params} "
              f"parameters, batch {args.batch} per rank, adam, {args.rounds} rounds x "
              f"{args.steps} steps, medians")
        print(f"{'variant':<20} {'ms/step':>9} {'vs local':>9} {'overhead ms':>12}")
        for name, ts in times.items():
            m = float(np.median(ts))
            print(f"{name:<20} {m * 1e3:9.3f} {m / base:9.2f} {(m - base) * 1e3:12.3f}")
    ringred.shutdown()


if __name__ == "__main__":
    main()
