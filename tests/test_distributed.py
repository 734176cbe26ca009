"""DistributedOptimizer, compression, state broadcast, periodic averaging (1, 2, 4 ranks)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

import ringred
from ringred.optim import SGD

from .mpi import run_mpi

HAS_TORCH = importlib.util.find_spec("torch") is not None


@pytest.mark.parametrize("n", [1, 2, 4])
def test_numpy_optimizers(n):
    run_mpi(n, "dopt_numpy", timeout=120)


@pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed")
@pytest.mark.parametrize("n", [1, 2, 4])
def test_torch_optimizers(n):
    run_mpi(n, "dopt_torch", timeout=180)


@pytest.mark.parametrize("comp,eps", [(ringred.Compression.fp16, 2.0**-11),
                                      (ringred.Compression.bf16, 2.0**-8)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_compression_round_trip_numpy(comp, eps, dtype):
    x = np.random.default_rng(0).uniform(-100, 100, 1000).astype(dtype)
    wire, ctx = comp.compress(x)
    assert wire.itemsize == 2 and wire.dtype != x.dtype
    back = comp.decompress(wire, ctx)
    assert back.dtype == x.dtype and back.shape == x.shape
    assert np.max(np.abs(back - x) / np.abs(x)) <= eps  # one round to nearest
    ints = np.arange(5)
    assert comp.compress(ints) == (ints, None)  # integers pass unchanged


@pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed")
@pytest.mark.parametrize("name,eps", [("fp16", 2.0**-11), ("bf16", 2.0**-8)])
def test_compression_round_trip_torch(name, eps):
    import torch

    comp = getattr(ringred.Compression, name)
    for dtype in (torch.float32, torch.float64):
        x = torch.empty(1000, dtype=dtype).uniform_(-100, 100)
        wire, ctx = comp.compress(x)
        assert wire.dtype == {"fp16": torch.float16, "bf16": torch.bfloat16}[name]
        back = comp.decompress(wire, ctx)
        assert back.dtype == dtype
        assert ((back - x).abs() / x.abs()).max().item() <= eps
    half = torch.ones(3, dtype=torch.float16)
    assert comp.compress(half)[0] is half
    x = torch.ones(3)
    assert ringred.Compression.none.decompress(*ringred.Compression.none.compress(x)) is x


def test_option_checks():
    p = {"w": np.zeros(3)}
    with pytest.raises(ValueError, match="backward_passes_per_step"):
        ringred.DistributedOptimizer(SGD(p), backward_passes_per_step=0)
    with pytest.raises(ValueError, match="op must be"):
        ringred.DistributedOptimizer(SGD(p), op=ringred.Max)
    with pytest.raises(ValueError, match="predivide"):
        ringred.DistributedOptimizer(SGD(p), op=ringred.Sum, gradient_predivide_factor=2.0)
    with pytest.raises(ValueError, match="average_every"):
        ringred.DistributedOptimizer(SGD(p), average_every=0)
    with pytest.raises(ValueError, match="compression"):
        ringred.DistributedOptimizer(SGD(p), average_every=2,
                                     compression=ringred.Compression.fp16)
    with pytest.raises(TypeError, match="compression"):
        ringred.DistributedOptimizer(SGD(p), compression="fp16")
    with pytest.raises(TypeError, match="named_parameters"):
        ringred.DistributedOptimizer(SGD(p), named_parameters=[("w", p["w"])])
    with pytest.raises(TypeError, match="ringred.optim or torch.optim"):
        ringred.DistributedOptimizer(object())
    wrapped = ringred.DistributedOptimizer(SGD(p, lr=0.1))
    with pytest.raises(TypeError, match="already"):
        ringred.DistributedOptimizer(wrapped)
    wrapped.lr = 0.5  # delegated to the wrapped optimizer
    assert wrapped.optimizer.lr == 0.5 and wrapped.hparams["lr"] == 0.5
    assert wrapped.params is p or wrapped.params == p


@pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed")
def test_torch_names():
    import torch

    m = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="does not name"):
        ringred.DistributedOptimizer(opt, named_parameters=[("weight", m.weight)])
    with pytest.raises(ValueError, match="duplicate"):
        ringred.DistributedOptimizer(opt, named_parameters=[("a", m.weight), ("a", m.bias)])
    d = ringred.DistributedOptimizer(opt)
    assert sorted(d._names.values()) == ["param.0.0", "param.0.1"]
    d.remove_hooks()
