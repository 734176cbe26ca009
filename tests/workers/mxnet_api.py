"""ringred.mxnet on 1-3 ranks: collectives on NDArrays, broadcast_parameters,
DistributedTrainer (2-rank training on split batches equals 1-process full-batch training
for SGD, momentum and Adam at lr 0.1), the dist_ringred kvstore, and clear errors on
mismatches.  Needs mxnet (1.9.1)."""

from __future__ import annotations

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon

import ringred
import ringred.mxnet as rmx

from .common import digest, expect, main, same_on_all_ranks

BATCH, DIN, STEPS = 24, 5, 6
TOL = 1e-6
OPTIMIZERS = [("sgd", {"learning_rate": 0.1}),
              ("sgd", {"learning_rate": 0.1, "momentum": 0.9}),
              ("adam", {"learning_rate": 0.1})]


def check_collectives() -> None:
    n, r = ringred.size(), ringred.rank()
    for dt in (np.float32, np.float64, np.int32):
        mine = (np.arange(12) * (r + 1)).astype(dt).reshape(3, 4)
        x = mx.nd.array(mine, dtype=dt)
        got = rmx.allreduce(x, op=ringred.Sum)
        assert isinstance(got, mx.nd.NDArray) and got.dtype == dt and got.shape == (3, 4)
        want = ringred.allreduce(mine, op=ringred.Sum)
        assert digest(got.asnumpy()) == digest(want)
        y = mx.nd.array(mine, dtype=dt)
        assert rmx.allreduce_(y, op=ringred.Sum) is y and digest(y.asnumpy()) == digest(want)
        b = rmx.broadcast(x, root_rank=n - 1)
        assert digest(b.asnumpy()) == digest((np.arange(12) * n).astype(dt).reshape(3, 4))
        rmx.broadcast_(x, root_rank=0)
        assert digest(x.asnumpy()) == digest(np.arange(12).astype(dt).reshape(3, 4))
        g = rmx.allgather(mx.nd.array(mine[: r + 1], dtype=dt))
        assert g.shape == (sum(range(1, n + 1)), 4)
    # a result computed by MXNet's engine is read only once the engine is done with it
    z = mx.nd.ones((200, 200)) * (r + 1)
    z = mx.nd.dot(z, mx.nd.ones((200, 200)))
    assert float(rmx.allreduce(z)[0, 0].asscalar()) == 200.0 * (n + 1) / 2


def make_net(dtype: str = "float64") -> gluon.nn.Sequential:
    """The article's network: Dense(10, relu) -> Dense(1)."""
    net = gluon.nn.Sequential()
    with net.name_scope():
        net.add(gluon.nn.Dense(10, activation="relu"))
        net.add(gluon.nn.Dense(1))
    net.cast(dtype)
    return net


def batch() -> tuple[mx.nd.NDArray, mx.nd.NDArray]:
    rng = np.random.default_rng(5)
    x = rng.normal(size=(BATCH, DIN))
    y = x @ rng.normal(size=(DIN, 1)) + 0.1 * rng.normal(size=(BATCH, 1))
    return mx.nd.array(x, dtype="float64"), mx.nd.array(y, dtype="float64")


def fresh(seed: int, x) -> gluon.nn.Sequential:
    mx.random.seed(seed)
    net = make_net()
    net.initialize(mx.init.Xavier())
    net(x)  # shapes
    return net


def copy_params(src: gluon.nn.Sequential, dst: gluon.nn.Sequential) -> None:
    for a, b in zip(src.collect_params().values(), dst.collect_params().values(), strict=True):
        b.set_data(a.data().copy())


def flat(net) -> np.ndarray:
    return np.concatenate([p.data().asnumpy().ravel() for p in net.collect_params().values()])


def train(net, trainer, x, y, batch_size: int) -> None:
    loss_fn = gluon.loss.L2Loss()
    for _ in range(STEPS):
        with autograd.record():
            loss = loss_fn(net(x), y)
        loss.backward()
        trainer.step(batch_size)


def shard(a):
    per = BATCH // ringred.size()
    return a[ringred.rank() * per:(ringred.rank() + 1) * per]


def check_trainer() -> None:
    x, y = batch()
    start = fresh(100 + ringred.rank(), x)
    rmx.broadcast_parameters(start.collect_params(), root_rank=0)
    assert same_on_all_ranks(flat(start))
    assert np.array_equal(flat(start), flat(fresh(100, x)))
    per = BATCH // ringred.size()
    for opt, hp in OPTIMIZERS:
        ref = fresh(0, x)
        copy_params(start, ref)
        train(ref, gluon.Trainer(ref.collect_params(), opt, dict(hp), kvstore=None), x, y, BATCH)
        net = fresh(0, x)
        copy_params(start, net)
        train(net, rmx.DistributedTrainer(net.collect_params(), opt, dict(hp)), shard(x),
              shard(y), per)
        err = float(np.max(np.abs(flat(net) - flat(ref))))
        assert err <= TOL, (opt, hp, err)
        assert same_on_all_ranks(flat(net))
        assert not np.array_equal(flat(net), flat(start))


def check_kvstore() -> None:
    """The article's line with one word changed: kvstore="dist_ringred".  Like dist_sync the
    gradients are summed, and the parameters are made rank 0's at the first step."""
    x, y = batch()
    per = BATCH // ringred.size()
    for opt, hp in OPTIMIZERS:
        net = fresh(200, x)
        trainer = gluon.Trainer(net.collect_params(), opt, dict(hp), kvstore="dist_ringred")
        train(net, trainer, shard(x), shard(y), per)
        assert trainer._kvstore is not None and trainer._kvstore.type == "dist_ringred"
        ref = fresh(200, x)
        # summed gradients of n shards normalised by the local batch = full batch over per
        train(ref, gluon.Trainer(ref.collect_params(), opt, dict(hp), kvstore=None), x, y, per)
        err = float(np.max(np.abs(flat(net) - flat(ref))))
        assert err <= TOL, ("kvstore", opt, hp, err)
        assert same_on_all_ranks(flat(net))
    # different parameters on every rank: the kvstore's broadcast makes them rank 0's (as
    # with dist_sync, the first gradients were computed at each rank's own parameters)
    net = fresh(300 + ringred.rank(), x)
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1},
                            kvstore="dist_ringred")
    train(net, trainer, shard(x), shard(y), per)
    assert same_on_all_ranks(flat(net))


def check_mismatches() -> None:
    n, r = ringred.size(), ringred.rank()
    x, _ = batch()
    net = fresh(1, x)
    expect(ValueError, lambda: rmx.DistributedTrainer(net.collect_params(), "sgd",
                                                      {"learning_rate": 0.1}, op=ringred.Max),
           "op must be")
    if n == 1:
        return
    # different parameter names on the last rank
    params = {f"w{i}": mx.nd.ones(3, dtype="float64") for i in range(2)}
    if r == n - 1:
        params = {"w0": params["w0"], "other": params["w1"]}
    expect(ringred.MismatchError, lambda: rmx.broadcast_parameters(params),
           "different structures", f"rank {n - 1}", "other")
    # a parameter that is not initialized on the last rank: it says so, the others are told
    uninit = make_net()
    if r < n - 1:
        uninit.initialize()
        uninit(x)
    else:
        uninit.initialize()  # deferred: shapes unknown until a forward pass
    if r == n - 1:
        expect(RuntimeError, lambda: rmx.broadcast_parameters(uninit.collect_params()),
               "not initialized", "forward pass")
    else:
        expect(ringred.MismatchError, lambda: rmx.broadcast_parameters(uninit.collect_params()),
               "rejected locally", str(n - 1))
    # shapes differ
    expect(ringred.MismatchError, lambda: rmx.allreduce(mx.nd.ones(3 + (r == n - 1))),
           "allreduce")
    # still usable
    rmx.broadcast_parameters(net.collect_params())
    assert float(rmx.allreduce(mx.nd.ones(2), op=ringred.Sum)[0].asscalar()) == n


def body() -> None:
    check_collectives()
    check_trainer()
    check_kvstore()
    check_mismatches()


if __name__ == "__main__":
    main(body)
