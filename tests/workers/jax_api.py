"""ringred.jax on 1-3 ranks: collectives, pytree helpers, the jit (io_callback) forms, the
optax wrapper (2-rank training on split batches equals 1-process full-batch training),
and clear errors on mismatches.  Needs jax and optax."""

from __future__ import annotations

import jax

jax.config.update("jax_enable_x64", True)  # float64 training: exact comparisons

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import ringred  # noqa: E402
import ringred.jax as rj  # noqa: E402
from ringred.jax.optax import distributed  # noqa: E402

from .common import BF16, data, digest, expect, main, same_on_all_ranks  # noqa: E402

BATCH, DIN, HID, DOUT, STEPS = 24, 6, 8, 3, 6
TOL = 1e-6


def check_collectives() -> None:
    n, r = ringred.size(), ringred.rank()
    for dt in (np.float32, np.float64, np.int32, BF16):
        dt = np.dtype(dt)
        mine = data(r, dt, 10, seed=3)
        every = [data(q, dt, 10, seed=3) for q in range(n)]
        x = jnp.asarray(mine)
        got = rj.allreduce(x, op=ringred.Sum)
        assert isinstance(got, jax.Array) and got.dtype == x.dtype and got.shape == x.shape
        want = ringred.allreduce(mine, op=ringred.Sum)  # the NumPy path is the reference
        assert digest(np.asarray(got)) == digest(want), dt
        # the result is JAX's view of ringred's aligned buffer, not a copy
        assert got.unsafe_buffer_pointer() % 64 == 0
        got = rj.broadcast(x, root_rank=n - 1)
        assert digest(np.asarray(got)) == digest(every[n - 1])
        got = rj.allgather(x[: r + 1])
        assert digest(np.asarray(got)) == digest(np.concatenate([e[: q + 1] for q, e in
                                                                 enumerate(every)]))
        rs = rj.reducescatter(x.reshape(5, 2), op=ringred.Sum)
        full = ringred.allreduce(mine.reshape(5, 2), op=ringred.Sum)
        rows = ringred.collectives.split_rows(5, n)
        start = sum(rows[:r])
        assert digest(np.asarray(rs)) == digest(full[start:start + rows[r]])
    # the jit forms give the same bits as the eager forms
    x = jnp.asarray(data(r, np.dtype(np.float32), 12, seed=4))

    @jax.jit
    def traced(v):
        return (rj.allreduce(v), rj.broadcast(v, 0), rj.allgather(v.reshape(3, 4)),
                rj.reducescatter(v.reshape(4, 3)))

    for a, b in zip(traced(x), (rj.allreduce(x), rj.broadcast(x, 0), rj.allgather(
            x.reshape(3, 4)), rj.reducescatter(x.reshape(4, 3))), strict=True):
        assert a.shape == b.shape and digest(np.asarray(a)) == digest(np.asarray(b))


def check_trees() -> None:
    n, r = ringred.size(), ringred.rank()
    tree = {"w": jnp.full((3, 2), float(r), jnp.float32),
            "b": (jnp.arange(5, dtype=jnp.int32) * (r + 1), jnp.full(2, r, jnp.bfloat16)),
            "flag": jnp.asarray([r == 0, True])}
    avg = rj.allreduce_tree({k: v for k, v in tree.items() if k != "flag"})
    assert jax.tree.structure(avg) == jax.tree.structure({"w": 0, "b": (0, 0)})
    np.testing.assert_array_equal(np.asarray(avg["w"]), np.full((3, 2), (n - 1) / 2, np.float32))
    ints = np.arange(5) * sum(range(1, n + 1))
    np.testing.assert_array_equal(np.asarray(avg["b"][0]), (ints / n).astype(np.int32))
    assert avg["b"][1].dtype == jnp.bfloat16
    got = rj.broadcast_tree(tree, root_rank=0)
    assert np.asarray(got["flag"]).tolist() == [True, True]
    assert float(got["w"][0, 0]) == 0.0 and got["b"][0].tolist() == list(range(5))
    jitted = jax.jit(rj.allreduce_tree)(tree["w"])
    assert digest(np.asarray(jitted)) == digest(np.asarray(avg["w"]))


def mlp(params, x):
    h = jnp.tanh(x @ params["w1"] + params["b1"])
    return h @ params["w2"] + params["b2"]


def loss(params, x, y):
    return jnp.mean((mlp(params, x) - y) ** 2)


GRAD = jax.jit(jax.grad(loss))  # compiled once per batch shape, shared by every run


def init(seed: int):
    rng = np.random.default_rng(seed)
    return {"w1": jnp.asarray(rng.normal(size=(DIN, HID)) * 0.5),
            "b1": jnp.zeros(HID, jnp.float64),
            "w2": jnp.asarray(rng.normal(size=(HID, DOUT)) * 0.5),
            "b2": jnp.zeros(DOUT, jnp.float64)}


def batch():
    rng = np.random.default_rng(11)
    return jnp.asarray(rng.normal(size=(BATCH, DIN))), jnp.asarray(rng.normal(size=(BATCH, DOUT)))


def shard(a):
    per = BATCH // ringred.size()
    return a[ringred.rank() * per:(ringred.rank() + 1) * per]


def train(tx, params, x, y, jit: bool, steps: int = STEPS):
    state = tx.init(params)

    def step(p, s, xb, yb):  # eager: the gradient is jitted, tx.update runs op by op
        u, s = tx.update(GRAD(p, xb, yb), s, p)
        return optax.apply_updates(p, u), s

    if jit:
        step = jax.jit(step)
    for _ in range(steps):
        params, state = step(params, state, x, y)
    return params


def flat(tree) -> np.ndarray:
    return np.concatenate([np.asarray(v).ravel() for v in jax.tree.leaves(tree)])


def check_training() -> None:
    x, y = batch()
    # every rank starts from rank 0's parameters
    params = rj.broadcast_tree(init(100 + ringred.rank()))
    assert same_on_all_ranks(flat(params))
    assert np.array_equal(flat(params), flat(init(100)))
    for make in (lambda: optax.sgd(0.1), lambda: optax.sgd(0.1, momentum=0.9),
                 lambda: optax.adam(0.1)):
        ref = flat(train(make(), params, x, y, jit=True))  # one process, whole batch
        for jit in (False, True):
            got = flat(train(distributed(make()), params, shard(x), shard(y), jit=jit))
            err = float(np.max(np.abs(got - ref)))
            assert err <= TOL, (make, jit, err)
            assert same_on_all_ranks(got)


def check_average_every() -> None:
    """Periodic averaging: local sgd steps on each rank's shard, parameters averaged every
    2nd step; the reference simulates every rank in this process."""
    n = ringred.size()
    x, y = batch()
    params = init(100)
    ref = flat(sim_at(4, params, x, y, n))
    for jit in (False, True):
        got = train(distributed(optax.sgd(0.1), average_every=2), params, shard(x), shard(y),
                    jit=jit, steps=4)
        err = float(np.max(np.abs(flat(got) - ref)))
        assert err <= TOL, (jit, err)
        # p + (mean - p) is the mean up to one rounding where a rank's p is far from it
        spread = ringred.allreduce(flat(got), op=ringred.Max) - ringred.allreduce(
            flat(got), op=ringred.Min)
        assert float(np.max(spread)) <= 1e-12, (jit, float(np.max(spread)))
        assert same_on_all_ranks(flat(rj.broadcast_tree(got)))
    expect(ValueError, lambda: distributed(optax.sgd(0.1), average_every=2).update(
        params, distributed(optax.sgd(0.1), average_every=2).init(params)), "needs params")
    expect(ValueError, lambda: distributed(optax.sgd(0.1), average_every=0), "average_every")
    expect(ValueError, lambda: distributed(optax.sgd(0.1), op=ringred.Max), "op must be")


def sim_at(steps: int, params, x, y, n: int):
    """Parameters after ``steps`` local sgd steps on n shards with averaging every 2nd."""
    per = BATCH // n
    grad = GRAD
    sim = [params] * n
    for t in range(1, steps + 1):
        sim = [jax.tree.map(lambda p, g: p - 0.1 * g, p, grad(p, x[q * per:(q + 1) * per],
                                                              y[q * per:(q + 1) * per]))
               for q, p in enumerate(sim)]
        if t % 2 == 0:
            sim = [jax.tree.map(lambda *ps: sum(ps) / n, *sim)] * n
    return sim[0]


def check_mismatches() -> None:
    n, r = ringred.size(), ringred.rank()
    if n == 1:
        return
    # a pytree whose structure differs on the last rank: every rank is told, with both
    tree = {"a": jnp.ones(4), "b": jnp.ones(2)} if r < n - 1 else {"a": jnp.ones(4),
                                                                  "c": jnp.ones(2)}
    expect(ringred.MismatchError, lambda: rj.allreduce_tree(tree, name="grads"),
           "grads", "different structures", f"rank {n - 1}", "'c'")
    # shapes differ in one array
    expect(ringred.MismatchError, lambda: rj.allreduce(jnp.ones(3 + (r == n - 1))), "allreduce")
    # inside jit: the ranks traced different shapes for an allgather
    with_err = None
    try:
        jax.jit(rj.allgather)(jnp.ones((2 + (r == n - 1), 2))).block_until_ready()
    except Exception as e:  # JAX wraps the callback's exception in its runtime error
        with_err = str(e)
    assert with_err is not None and "same first dimension" in with_err, with_err
    # and the library is still usable afterwards
    assert float(rj.allreduce(jnp.ones(3), op=ringred.Sum)[0]) == n


def body() -> None:
    check_collectives()
    check_trees()
    check_training()
    check_average_every()
    check_mismatches()


if __name__ == "__main__":
    main(body)
