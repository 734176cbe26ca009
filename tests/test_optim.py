"""ringred.optim against torch.optim, step for step, and ringred.data.shard.

Single process, no MPI, no compiled extension needed beyond importing the package.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys

import numpy as np
import pytest

from ringred.data import shard
from ringred.optim import SGD, Adagrad, Adam, AdamW, Optimizer, RMSProp

SHAPES = {"w": (4, 3), "b": (3,), "s": (), "k": (2, 3, 2)}
N_STEPS = 50
RTOL = 1e-12

TORCH_NAME = {SGD: "SGD", Adam: "Adam", AdamW: "AdamW", RMSProp: "RMSprop", Adagrad: "Adagrad"}

CASES = [
    (SGD, {"lr": 0.05}),
    (SGD, {"lr": 0.05, "momentum": 0.9}),
    (SGD, {"lr": 0.05, "momentum": 0.9, "dampening": 0.3}),
    (SGD, {"lr": 0.05, "momentum": 0.9, "nesterov": True}),
    (SGD, {"lr": 0.05, "weight_decay": 0.01}),
    (SGD, {"lr": 0.05, "momentum": 0.8, "dampening": 0.1, "weight_decay": 0.02}),
    (SGD, {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01}),
    (SGD, {"lr": 0.05, "momentum": 0.9, "maximize": True}),
    (Adam, {}),
    (Adam, {"lr": 0.01, "betas": (0.8, 0.99), "eps": 1e-6}),
    (Adam, {"lr": 0.01, "weight_decay": 0.05}),
    (Adam, {"lr": 0.01, "amsgrad": True}),
    (Adam, {"lr": 0.01, "weight_decay": 0.05, "amsgrad": True}),
    (Adam, {"lr": 0.01, "betas": (0.3, 0.9), "maximize": True}),  # 1 - beta1 >= 0.5 lerp
    (AdamW, {"lr": 0.01}),
    (AdamW, {"lr": 0.01, "weight_decay": 0.1}),
    (AdamW, {"lr": 0.01, "weight_decay": 0.1, "amsgrad": True}),
    (RMSProp, {}),
    (RMSProp, {"lr": 0.005, "alpha": 0.9, "eps": 1e-6}),
    (RMSProp, {"lr": 0.005, "centered": True}),
    (RMSProp, {"lr": 0.005, "momentum": 0.9}),
    (RMSProp, {"lr": 0.005, "weight_decay": 0.05}),
    (RMSProp, {"lr": 0.005, "centered": True, "momentum": 0.5, "weight_decay": 0.01}),
    (Adagrad, {}),
    (Adagrad, {"lr": 0.1, "lr_decay": 0.01}),
    (Adagrad, {"lr": 0.1, "initial_accumulator_value": 0.5}),
    (Adagrad, {"lr": 0.1, "weight_decay": 0.05}),
    (Adagrad, {"lr": 0.1, "lr_decay": 0.05, "initial_accumulator_value": 0.1, "eps": 1e-8}),
]


def _case_id(case: tuple[type[Optimizer], dict]) -> str:
    cls, kw = case
    return cls.__name__ + "".join(f"-{k}={v}" for k, v in kw.items())


def _make_params(rng: np.random.Generator, dtype=np.float64) -> dict[str, np.ndarray]:
    return {k: np.asarray(rng.standard_normal(s), dtype=dtype) for k, s in SHAPES.items()}


def _grad_stream(seed: int, n: int, skip: bool = False):
    """n steps of random gradients; with ``skip`` some parameters get None on some steps."""
    rng = np.random.default_rng(seed)
    out = []
    for t in range(n):
        grads = {k: rng.standard_normal(s) for k, s in SHAPES.items()}
        if skip:
            if t % 3 == 1:
                grads["b"] = None
            if t % 5 == 2:
                grads["s"] = None
        out.append(grads)
    return out


def _rel_err(ours: np.ndarray, ref: np.ndarray) -> float:
    """Relative error of one parameter array: ``max|ours - ref| / max|ref|``.

    Normwise rather than element by element: elements that pass close to zero carry absolute
    rounding differences of a few ulps of the array's scale (torch's CPU kernels use FMA,
    NumPy does not), which element-wise would read as a large relative error.
    """
    ours, ref = np.asarray(ours, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    diff = float(np.max(np.abs(ours - ref), initial=0.0))
    if diff == 0.0:
        return 0.0
    return diff / max(float(np.max(np.abs(ref))), np.finfo(np.float64).tiny)


def _run_against_torch(case, *, skip: bool = False) -> float:
    torch = pytest.importorskip("torch")
    cls, kw = case
    params = _make_params(np.random.default_rng(1))
    tparams = {k: torch.tensor(v.copy(), dtype=torch.float64) for k, v in params.items()}
    opt = cls(params, **kw)
    topt_cls = getattr(torch.optim, TORCH_NAME[cls])
    topt = topt_cls(list(tparams.values()), foreach=False, **kw)
    worst = 0.0
    for grads in _grad_stream(2, N_STEPS, skip=skip):
        opt.step(grads)
        for k, t in tparams.items():
            g = grads[k]
            t.grad = None if g is None else torch.from_numpy(g.copy())
        topt.step()
        for k, t in tparams.items():
            worst = max(worst, _rel_err(params[k], t.numpy()))
    return worst


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_matches_torch(case):
    worst = _run_against_torch(case)
    assert worst <= RTOL, f"max relative error {worst:.3e} > {RTOL:g}"


@pytest.mark.parametrize(
    "case",
    [
        (SGD, {"lr": 0.05, "momentum": 0.9}),
        (Adam, {"lr": 0.01, "amsgrad": True}),
        (AdamW, {"lr": 0.01}),
        (RMSProp, {"lr": 0.005, "centered": True, "momentum": 0.5}),
        (Adagrad, {"lr": 0.1, "lr_decay": 0.01}),
    ],
    ids=_case_id,
)
def test_none_grads_skip_like_torch(case):
    """A None gradient skips the parameter, including its step count (Adam bias correction)."""
    worst = _run_against_torch(case, skip=True)
    assert worst <= RTOL, f"max relative error {worst:.3e} > {RTOL:g}"


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_state_dict_round_trip(case):
    cls, kw = case
    grads = _grad_stream(3, 20)
    params = _make_params(np.random.default_rng(4))
    opt = cls(params, **kw)
    for g in grads[:10]:
        opt.step(g)
    sd = opt.state_dict()
    sd_before = copy.deepcopy(sd)

    params2 = {k: v.copy() for k, v in params.items()}
    opt2 = cls(params2, lr=0.123)
    opt2.load_state_dict(sd)
    assert opt2.hparams == opt.hparams
    assert opt2.step_count == opt.step_count == 10
    for g in grads[10:]:
        opt.step(g)
        opt2.step(g)
    for k in params:
        assert params[k].tobytes() == params2[k].tobytes()
        for key, v in opt.state[k].items():
            v2 = opt2.state[k][key]
            if isinstance(v, np.ndarray):
                assert v.tobytes() == v2.tobytes()
            else:
                assert v == v2
    # the state_dict held copies: stepping did not change it, and it was not aliased
    for k, st in sd["state"].items():
        for key, v in st.items():
            w = sd_before["state"][k][key]
            assert np.array_equal(v, w) if isinstance(v, np.ndarray) else v == w
            if isinstance(v, np.ndarray):
                assert not np.shares_memory(v, opt.state[k][key])
                assert not np.shares_memory(v, opt2.state[k][key])


def test_state_dict_format():
    params = _make_params(np.random.default_rng(0))
    opt = Adam(params, lr=0.01, amsgrad=True)
    opt.step(_grad_stream(0, 1)[0])
    sd = opt.state_dict()
    assert sd["optimizer"] == "Adam"
    assert sd["hparams"]["lr"] == 0.01 and sd["hparams"]["betas"] == (0.9, 0.999)
    assert sd["param_names"] == list(SHAPES)
    assert sd["step_count"] == 1
    st = sd["state"]["w"]
    assert st["step"] == 1 and isinstance(st["step"], int)
    assert set(st) == {"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"}
    assert st["exp_avg"].dtype == np.float64 and st["exp_avg"].shape == SHAPES["w"]


def test_load_state_dict_copies_into_existing_arrays():
    params = _make_params(np.random.default_rng(0))
    opt = RMSProp(params, momentum=0.9)
    opt.step(_grad_stream(0, 1)[0])
    buf = opt.state["w"]["momentum_buffer"]
    sd = opt.state_dict()
    sd["state"]["w"]["momentum_buffer"][...] = 7.0
    opt.load_state_dict(sd)
    assert opt.state["w"]["momentum_buffer"] is buf
    assert np.all(buf == 7.0)
    assert not np.shares_memory(buf, sd["state"]["w"]["momentum_buffer"])


def test_load_state_dict_rejects_mismatch():
    params = _make_params(np.random.default_rng(0))
    sd = Adam(params).state_dict()
    with pytest.raises(ValueError):
        SGD(params).load_state_dict(sd)
    with pytest.raises(ValueError):
        Adam({"x": np.zeros(3)}).load_state_dict(sd)
    bad = Adam(params).state_dict()
    bad["hparams"]["lr"] = -1.0
    with pytest.raises(ValueError):
        Adam(params).load_state_dict(bad)


@pytest.mark.parametrize("cls", [SGD, Adam, AdamW, RMSProp, Adagrad])
def test_list_params_and_in_place(cls):
    rng = np.random.default_rng(5)
    arrays = [rng.standard_normal(s) for s in SHAPES.values()]
    ids = [id(a) for a in arrays]
    before = [a.copy() for a in arrays]
    opt = cls(arrays, lr=0.1)
    assert opt.param_names == ["0", "1", "2", "3"]
    assert all(opt.params[str(i)] is a for i, a in enumerate(arrays))
    grads = [rng.standard_normal(s) for s in SHAPES.values()]
    grads_before = [g.copy() for g in grads]
    opt.step(grads)
    for a, i, b in zip(arrays, ids, before, strict=True):
        assert id(a) == i
        assert not np.array_equal(a, b)
    for g, gb in zip(grads, grads_before, strict=True):
        assert np.array_equal(g, gb)  # gradients are never modified
    # a dict of the same arrays gives the same result as the list form
    arrays2 = [b.copy() for b in before]
    cls({str(i): a for i, a in enumerate(arrays2)}, lr=0.1).step(
        {str(i): g for i, g in enumerate(grads)}
    )
    for a, a2 in zip(arrays, arrays2, strict=True):
        assert a.tobytes() == a2.tobytes()


@pytest.mark.parametrize("cls", [SGD, Adam, AdamW, RMSProp, Adagrad])
def test_none_grads_skip(cls):
    rng = np.random.default_rng(6)
    arrays = [rng.standard_normal(3), rng.standard_normal(2)]
    frozen = arrays[1].copy()
    opt = cls(arrays, lr=0.1)
    opt.step([rng.standard_normal(3), None])
    opt.step({"0": rng.standard_normal(3)})  # a missing key skips too
    assert np.array_equal(arrays[1], frozen)
    assert opt.state["0"]["step"] == 2
    assert "1" not in opt.state or opt.state["1"]["step"] == 0
    assert opt.step_count == 2


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("cls", [SGD, Adam, AdamW, RMSProp, Adagrad])
def test_low_precision_dtypes(cls, dtype):
    rng = np.random.default_rng(7)
    params = _make_params(rng, dtype)
    ref = {k: v.astype(np.float64) for k, v in params.items()}
    kw = {"momentum": 0.9} if cls in (SGD, RMSProp) else {}
    opt, opt_ref = cls(params, lr=0.01, **kw), cls(ref, lr=0.01, **kw)
    for grads in _grad_stream(8, 5):
        opt.step({k: g.astype(dtype) for k, g in grads.items()})
        opt_ref.step({k: g.astype(dtype).astype(np.float64) for k, g in grads.items()})
    tol = 1e-4 if dtype == np.float32 else 2e-2
    for k in params:
        assert params[k].dtype == dtype
        for v in opt.state[k].values():
            if isinstance(v, np.ndarray):
                assert v.dtype == dtype
        np.testing.assert_allclose(params[k], ref[k], rtol=tol, atol=tol)


def test_float32_matches_torch_closely():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(9)
    params = _make_params(rng, np.float32)
    tparams = [torch.tensor(v.copy()) for v in params.values()]
    opt = Adam(params, lr=0.01, weight_decay=0.01)
    topt = torch.optim.Adam(tparams, lr=0.01, weight_decay=0.01, foreach=False)
    for grads in _grad_stream(10, 20):
        opt.step({k: g.astype(np.float32) for k, g in grads.items()})
        for t, g in zip(tparams, grads.values(), strict=True):
            t.grad = torch.from_numpy(g.astype(np.float32))
        topt.step()
    for p, t in zip(params.values(), tparams, strict=True):
        np.testing.assert_allclose(p, t.numpy(), rtol=1e-5, atol=1e-6)


INVALID = [
    (SGD, {"lr": -0.1}),
    (SGD, {"momentum": -0.5}),
    (SGD, {"weight_decay": -1e-4}),
    (SGD, {"nesterov": True}),
    (SGD, {"nesterov": True, "momentum": 0.9, "dampening": 0.1}),
    (Adam, {"lr": -1e-3}),
    (Adam, {"eps": -1e-8}),
    (Adam, {"betas": (1.0, 0.999)}),
    (Adam, {"betas": (0.9, -0.1)}),
    (Adam, {"weight_decay": -0.1}),
    (AdamW, {"betas": (0.9, 1.5)}),
    (AdamW, {"lr": -1.0}),
    (RMSProp, {"lr": -0.01}),
    (RMSProp, {"eps": -1.0}),
    (RMSProp, {"momentum": -0.1}),
    (RMSProp, {"weight_decay": -0.1}),
    (RMSProp, {"alpha": -0.5}),
    (Adagrad, {"lr": -0.01}),
    (Adagrad, {"lr_decay": -0.1}),
    (Adagrad, {"weight_decay": -0.1}),
    (Adagrad, {"initial_accumulator_value": -1.0}),
    (Adagrad, {"eps": -1e-10}),
]


@pytest.mark.parametrize("case", INVALID, ids=[_case_id(c) for c in INVALID])
def test_invalid_hyperparameters(case):
    cls, kw = case
    with pytest.raises(ValueError):
        cls([np.zeros(3)], **kw)


def test_invalid_hyperparameters_like_torch():
    torch = pytest.importorskip("torch")
    for cls, kw in INVALID:
        with pytest.raises(ValueError):
            getattr(torch.optim, TORCH_NAME[cls])([torch.zeros(3)], **kw)


def test_lr_setter():
    p = np.ones(2)
    opt = SGD([p], lr=0.5)
    opt.lr = 0.25
    opt.step([np.ones(2)])
    assert np.array_equal(p, [0.75, 0.75])
    with pytest.raises(ValueError):
        opt.lr = -1.0


def test_bad_params_and_grads():
    with pytest.raises(TypeError):
        SGD([[1.0, 2.0]])  # not an array: cannot be updated in place
    with pytest.raises(TypeError):
        SGD([np.zeros(3, dtype=np.int32)])
    with pytest.raises(ValueError):
        SGD([])
    p = np.zeros(3)
    with pytest.raises(ValueError):
        SGD([p, p])
    opt = SGD({"a": np.zeros(3)})
    with pytest.raises(ValueError):
        opt.step({"a": np.zeros(4)})
    with pytest.raises(KeyError):
        opt.step({"b": np.zeros(3)})
    with pytest.raises(ValueError):
        opt.step([np.zeros(3), np.zeros(3)])


def test_numpy_use_does_not_import_cupy():
    code = (
        "import sys, numpy as np\n"
        "from ringred.optim import Adam\n"
        "Adam([np.ones(3)]).step([np.ones(3)])\n"
        "assert 'cupy' not in sys.modules\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=60)


# ---------------------------------------------------------------------- ringred.data.shard


@pytest.mark.parametrize("seed", [None, 0, 123])
@pytest.mark.parametrize("n,size", [(12, 4), (10, 1), (0, 3), (30, 5)])
def test_shard_disjoint_cover(n, size, seed):
    parts = [shard(n, r, size, seed=seed) for r in range(size)]
    assert all(len(p) == n // size for p in parts)
    allidx = np.concatenate(parts)
    assert allidx.dtype == np.int64
    assert np.array_equal(np.sort(allidx), np.arange(n))
    for drop in (True, False):
        again = [shard(n, r, size, seed=seed, drop_last=drop) for r in range(size)]
        assert all(np.array_equal(a, b) for a, b in zip(parts, again, strict=True))


def test_shard_unshuffled_is_strided():
    assert shard(10, 1, 4).tolist() == [1, 5, 9]
    assert shard(10, 3, 4).tolist() == [3, 7, 1]  # padded by wrapping around
    assert shard(10, 2, 4).tolist() == [2, 6, 0]
    assert shard(10, 3, 4, drop_last=True).tolist() == [3, 7]


@pytest.mark.parametrize("n,size", [(10, 4), (7, 3), (2, 5), (1, 4), (13, 13), (101, 8)])
@pytest.mark.parametrize("seed", [None, 7])
def test_shard_padding_rule(n, size, seed):
    per_rank = -(-n // size)
    base = np.arange(n) if seed is None else np.random.default_rng((seed, 0)).permutation(n)
    padded = np.resize(base, per_rank * size)  # wraps around, repeating as often as needed
    parts = [shard(n, r, size, seed=seed) for r in range(size)]
    for r, p in enumerate(parts):
        assert len(p) == per_rank
        assert np.array_equal(p, padded[r::size])
    assert set(np.concatenate(parts).tolist()) == set(range(n))
    dropped = [shard(n, r, size, seed=seed, drop_last=True) for r in range(size)]
    for r, p in enumerate(dropped):
        assert len(p) == n // size
        assert np.array_equal(p, base[: (n // size) * size][r::size])
    assert len(set(np.concatenate(dropped).tolist())) == (n // size) * size


def test_shard_matches_torch_distributed_sampler():
    DistributedSampler = pytest.importorskip("torch.utils.data").DistributedSampler

    for n, size in [(10, 4), (7, 3), (2, 5), (16, 4)]:
        for drop in (False, True):
            if drop and n < size:
                continue
            for r in range(size):
                s = DistributedSampler(
                    range(n), num_replicas=size, rank=r, shuffle=False, drop_last=drop
                )
                assert list(s) == shard(n, r, size, drop_last=drop).tolist()


def test_shard_same_permutation_on_all_ranks():
    n, size = 103, 4
    parts = [shard(n, r, size, seed=42, epoch=3) for r in range(size)]
    perm = np.random.default_rng((42, 3)).permutation(n)
    padded = np.resize(perm, 26 * size)
    for r in range(size):
        assert np.array_equal(parts[r], padded[r::size])
        assert np.array_equal(parts[r], shard(n, r, size, seed=42, epoch=3))


def test_shard_epoch_and_seed_change_permutation():
    a = shard(1000, 1, 4, seed=5, epoch=0)
    b = shard(1000, 1, 4, seed=5, epoch=1)
    c = shard(1000, 1, 4, seed=6, epoch=0)
    assert not np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert np.array_equal(
        np.sort(np.concatenate([shard(1000, r, 4, seed=5, epoch=1) for r in range(4)])),
        np.arange(1000),
    )


@pytest.mark.parametrize(
    "args",
    [(10, -1, 4), (10, 4, 4), (10, 0, 0), (-1, 0, 2)],
)
def test_shard_validation(args):
    with pytest.raises(ValueError):
        shard(*args)
    with pytest.raises(TypeError):
        shard(10.0, 0, 2)
