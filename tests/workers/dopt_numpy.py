"""DistributedOptimizer, state broadcast and periodic averaging with ringred.optim (NumPy).

Data-parallel training on a batch split across the ranks must equal single-process training
on the whole batch (float64, Average)."""

from __future__ import annotations

import numpy as np

import ringred
from ringred.optim import SGD, Adam

from .common import digest, main, same_on_all_ranks

BATCH, DIN, DOUT, STEPS = 24, 5, 3, 5
TOL = 1e-10


def data(seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(BATCH, DIN)), rng.normal(size=(BATCH, DOUT))


def init_params(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"W": rng.normal(size=(DIN, DOUT)) * 0.5, "b": rng.normal(size=DOUT) * 0.1}


def grads(p: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray, scale: float = 1.0):
    """Gradient of mean_rows(0.5 * |tanh(xW + b) - y|²) times ``scale``."""
    h = np.tanh(x @ p["W"] + p["b"])
    d = (h - y) * (1 - h * h) * (scale / len(x))
    return {"W": x.T @ d, "b": d.sum(0)}


def local_rows() -> slice:
    n, r = ringred.size(), ringred.rank()
    per = BATCH // n
    return slice(r * per, (r + 1) * per)


def reference(make_opt, steps: int = STEPS) -> dict[str, np.ndarray]:
    """Single-process training on the whole batch, from seed 0's parameters."""
    x, y = data()
    p = init_params(0)
    opt = make_opt(p)
    for _ in range(steps):
        opt.step(grads(p, x, y))
    return p


def close(a: dict, b: dict, tol: float = TOL) -> None:
    for k in a:
        err = np.max(np.abs(a[k] - b[k]))
        assert err <= tol, (k, err)


def check_equivalence(make_opt, bpps: int) -> None:
    """Different initial weights per rank, broadcast from 0, then data-parallel training."""
    x, y = data()
    rows = local_rows()
    p = init_params(ringred.rank())  # deliberately different on every rank
    ringred.broadcast_parameters(p, root_rank=0)
    assert np.array_equal(p["W"], init_params(0)["W"])
    opt = ringred.DistributedOptimizer(make_opt(p), backward_passes_per_step=bpps)
    xs, ys = x[rows], y[rows]
    for _ in range(STEPS):
        for part in np.array_split(np.arange(len(xs)), bpps):  # micro-batches
            opt.step(grads(p, xs[part], ys[part], scale=1.0 / bpps))
    close(p, reference(make_opt))
    assert same_on_all_ranks(p["W"]) and same_on_all_ranks(p["b"])


def sgd_nesterov(p):
    return SGD(p, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3)


def adam(p):
    return Adam(p, lr=0.05, weight_decay=1e-3)


def check_state_broadcast() -> None:
    """Rank 0 has trained; the others are fresh. After the broadcast all step alike."""
    x, y = data()
    p = init_params(0)
    inner = Adam(p, lr=0.01, amsgrad=True)
    if ringred.rank() == 0:
        for _ in range(3):
            inner.step(grads(p, x, y))
        inner.lr = 0.02
    else:
        inner.lr = 0.5  # wrong everywhere but on the root
    opt = ringred.DistributedOptimizer(inner)
    ringred.broadcast_parameters(p, root_rank=0)
    ringred.broadcast_optimizer_state(opt, root_rank=0)
    assert inner.lr == 0.02 and inner.step_count == 3, (inner.lr, inner.step_count)
    sd = inner.state_dict()
    for name in ("W", "b"):
        assert sd["state"][name]["step"] == 3
        for key in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
            assert same_on_all_ranks(sd["state"][name][key]), (name, key)
    opt.step(grads(p, x, y))  # same gradient everywhere
    assert same_on_all_ranks(p["W"])


def check_compression() -> None:
    n, r = ringred.size(), ringred.rank()
    for comp, eps in ((ringred.Compression.fp16, 2.0**-10), (ringred.Compression.bf16, 2.0**-7)):
        for dtype in (np.float32, np.float64):
            p = {"w": np.zeros(1000, dtype)}
            opt = ringred.DistributedOptimizer(SGD(p, lr=1.0), compression=comp)
            g = np.random.default_rng([3, r]).uniform(0.5, 2.0, 1000).astype(dtype)
            exact = np.mean(
                [np.random.default_rng([3, k]).uniform(0.5, 2.0, 1000) for k in range(n)], axis=0
            )
            avg = opt.synchronize({"w": g})["w"]
            assert avg.dtype == dtype
            # one rounding per input, one of the sum, one of the scaling
            assert np.max(np.abs(avg - exact) / exact) <= 3 * eps, comp
            assert same_on_all_ranks(avg)


def check_missing_gradient() -> None:
    """Rank 1 has no gradient for "b": no hang, b's gradient averages the others'."""
    n, r = ringred.size(), ringred.rank()
    p = {"w": np.zeros(4), "b": np.zeros(2)}
    opt = ringred.DistributedOptimizer(SGD(p, lr=1.0))
    g = {"w": np.full(4, r + 1.0)}
    if r != 1:
        g["b"] = np.full(2, r + 1.0)
    opt.step(g)
    assert np.allclose(p["w"], -np.mean(np.arange(1, n + 1)))
    expect_b = -(sum(k + 1.0 for k in range(n) if k != 1)) / n
    assert np.allclose(p["b"], expect_b), (p["b"], expect_b)


def check_clipping() -> None:
    """synchronize -> clip the averaged gradients -> step under skip_synchronize."""
    x, y = data()
    p = init_params(0)
    opt = ringred.DistributedOptimizer(SGD(p, lr=0.5, momentum=0.5))
    rp = init_params(0)
    ref = SGD(rp, lr=0.5, momentum=0.5)
    rows = local_rows()
    for _ in range(3):
        avg = opt.synchronize(grads(p, x[rows], y[rows]))
        full = grads(rp, x, y)
        for g in (avg, full):
            norm = np.sqrt(sum(float(np.sum(v * v)) for v in g.values()))
            for v in g.values():
                v *= min(1.0, 0.05 / norm)
        with opt.skip_synchronize():
            opt.step(avg)
        ref.step(full)
    close(p, rp)
    assert same_on_all_ranks(p["W"])


def check_sum_and_predivide() -> None:
    n, r = ringred.size(), ringred.rank()
    p = {"w": np.zeros(3)}
    opt = ringred.DistributedOptimizer(SGD(p, lr=1.0), op=ringred.Sum)
    assert np.array_equal(opt.synchronize({"w": np.full(3, r + 1.0)})["w"],
                          np.full(3, n * (n + 1) / 2))
    opt = ringred.DistributedOptimizer(SGD(p, lr=1.0), gradient_predivide_factor=4.0)
    got = opt.synchronize({"w": np.full(3, r + 1.0)})["w"]
    assert np.allclose(got, (n + 1) / 2, rtol=1e-15), got


def check_periodic_averaging(k: int = 3) -> None:
    """average_every=k: ranks drift apart on their own gradients, meet every k steps, at
    the average of where each rank had got to."""
    n = ringred.size()
    x, y = data()
    rows = local_rows()
    p = init_params(0)
    opt = ringred.DistributedOptimizer(SGD(p, lr=0.3), average_every=k)
    for step in range(1, 2 * k + 1):
        g = grads(p, x[rows], y[rows])
        local = p["W"] - 0.3 * g["W"]  # where plain local SGD takes this rank
        opt.step(g)
        if step % k == 0:
            expect = np.mean(ringred.allgather_object(local), axis=0)
            assert np.max(np.abs(p["W"] - expect)) <= 1e-15, step
            assert same_on_all_ranks(p["W"]) and same_on_all_ranks(p["b"]), step
        else:
            assert np.array_equal(p["W"], local)
            if n > 1:
                assert not same_on_all_ranks(p["W"]), step
    assert opt.optimizer.step_count == 2 * k


def body() -> None:
    check_equivalence(sgd_nesterov, 1)
    check_equivalence(adam, 1)
    check_equivalence(sgd_nesterov, 2)
    check_equivalence(adam, 2)
    check_state_broadcast()
    check_compression()
    check_missing_gradient()
    check_clipping()
    check_sum_and_predivide()
    check_periodic_averaging()
    p = {"a": np.arange(3.0) * (ringred.rank() + 1), "n": ringred.rank()}
    ringred.broadcast_parameters(p, root_rank=ringred.size() - 1)
    assert p["n"] == ringred.size() - 1 and digest(p["a"]) == digest(np.arange(3.0) * p["a"][1])


if __name__ == "__main__":
    main(body)
