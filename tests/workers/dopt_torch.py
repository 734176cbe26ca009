"""DistributedOptimizer with torch.optim: hooks, accumulation, clipping, state broadcast.

Data-parallel training on a batch split across the ranks must equal single-process training
on the whole batch (float64, Average)."""

from __future__ import annotations

import copy

import numpy as np
import torch

import ringred

from .common import main, same_on_all_ranks

torch.set_default_dtype(torch.float64)
torch.set_num_threads(1)
BATCH, DIN, DOUT, STEPS = 24, 6, 3, 4
TOL = 1e-10


def data(seed: int = 11) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(BATCH, DIN, generator=g), torch.randn(BATCH, DOUT, generator=g)


def model(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(DIN, 8), torch.nn.Tanh(), torch.nn.Linear(8, 8), torch.nn.Tanh(),
        torch.nn.Linear(8, DOUT),
    )


def local_rows() -> slice:
    n, r = ringred.size(), ringred.rank()
    per = BATCH // n
    return slice(r * per, (r + 1) * per)


def loss_fn(m, x, y):
    return torch.nn.functional.mse_loss(m(x), y)


def reference(make_opt, steps: int = STEPS, clip: float | None = None) -> torch.nn.Module:
    x, y = data()
    m = model(0)
    opt = make_opt(m)
    for _ in range(steps):
        opt.zero_grad()
        loss_fn(m, x, y).backward()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(m.parameters(), clip)
        opt.step()
    return m


def close(a: torch.nn.Module, b: torch.nn.Module, tol: float = TOL) -> None:
    for (name, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters(), strict=True):
        err = (pa - pb).abs().max().item()
        assert err <= tol, (name, err)


def identical(m: torch.nn.Module) -> bool:
    return all(same_on_all_ranks(p.detach().numpy()) for p in m.parameters())


def sgd_nesterov(m):
    return torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9, nesterov=True,
                           weight_decay=1e-3)


def adam(m):
    return torch.optim.Adam(m.parameters(), lr=0.01)


def check_equivalence(make_opt, bpps: int) -> None:
    """Different initial weights per rank, broadcast from 0, then hooks + step."""
    x, y = data()
    rows = local_rows()
    m = model(0 if ringred.rank() == 0 else 100 + ringred.rank())  # different elsewhere
    ringred.broadcast_parameters(m.state_dict(), root_rank=0)
    close(m, model(0), 0.0)
    opt = ringred.DistributedOptimizer(make_opt(m), named_parameters=m.named_parameters(),
                                       backward_passes_per_step=bpps)
    xs, ys = x[rows], y[rows]
    for _ in range(STEPS):
        opt.zero_grad()
        for part in torch.arange(len(xs)).chunk(bpps):  # micro-batches
            (loss_fn(m, xs[part], ys[part]) / bpps).backward()
        # the hooks started every allreduce during backward
        assert len(opt._handles) == 6 and all(h[0] is not None for h in opt._handles.values())
        opt.step()
    close(m, reference(make_opt))
    assert identical(m)
    opt.remove_hooks()


def check_state_broadcast() -> None:
    """Rank 0 has trained; the others have never stepped (empty state)."""
    x, y = data()
    m = model(0)
    inner = torch.optim.Adam(m.parameters(), lr=0.01, amsgrad=True)
    if ringred.rank() == 0:
        for _ in range(3):
            inner.zero_grad()
            loss_fn(m, x, y).backward()
            inner.step()
        inner.param_groups[0]["lr"] = 0.02
    opt = ringred.DistributedOptimizer(inner, named_parameters=m.named_parameters())
    ringred.broadcast_parameters(m.named_parameters(), root_rank=0)
    ringred.broadcast_optimizer_state(opt, root_rank=0)
    assert opt.param_groups[0]["lr"] == 0.02
    for st in inner.state.values():
        assert float(st["step"]) == 3.0
        for key in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
            assert same_on_all_ranks(st[key].numpy()), key
    opt.zero_grad()
    loss_fn(m, x, y).backward()  # the same batch everywhere
    opt.step()
    assert identical(m)
    opt.remove_hooks()


def check_compression() -> None:
    n, r = ringred.size(), ringred.rank()
    exact = torch.stack(
        [torch.rand(500, generator=torch.Generator().manual_seed(k)) + 0.5 for k in range(n)]
    ).mean(0)
    for comp, eps in ((ringred.Compression.fp16, 2.0**-10), (ringred.Compression.bf16, 2.0**-7)):
        for dtype in (torch.float32, torch.float64):
            w = torch.nn.Parameter(torch.zeros(500, dtype=dtype))
            opt = ringred.DistributedOptimizer(torch.optim.SGD([w], lr=1.0), compression=comp)
            g = torch.rand(500, generator=torch.Generator().manual_seed(r)) + 0.5
            (w * g.to(dtype)).sum().backward()
            opt.synchronize()
            assert w.grad.dtype == dtype
            rel = ((w.grad.double() - exact) / exact).abs().max().item()
            assert rel <= 3 * eps, (comp, dtype, rel)
            assert same_on_all_ranks(w.grad.numpy())
            opt.remove_hooks()


def check_missing_gradient() -> None:
    """A parameter used only on rank 0 (at the input, so its hook fires last there)."""
    n, r = ringred.size(), ringred.rank()
    m = model(0)
    shift = torch.nn.Parameter(torch.zeros(DIN))
    params = [("shift", shift), *m.named_parameters()]
    opt = ringred.DistributedOptimizer(torch.optim.SGD([p for _, p in params], lr=0.1),
                                       named_parameters=params)
    x, y = data()
    opt.zero_grad()
    xin = x + shift if r == 0 else x
    loss_fn(m, xin, y).backward()
    opt.synchronize()
    assert shift.grad is not None
    m0 = model(0)
    s0 = torch.nn.Parameter(torch.zeros(DIN))
    loss_fn(m0, x + s0, y).backward()
    assert torch.allclose(shift.grad, s0.grad / n, rtol=1e-12, atol=0), (shift.grad, s0.grad)
    with opt.skip_synchronize():
        opt.step()
    assert identical(m)
    opt.remove_hooks()


def check_clipping_and_zero_grad() -> None:
    x, y = data()
    rows = local_rows()
    m = model(0)

    def make(mm):
        return torch.optim.SGD(mm.parameters(), lr=0.2, momentum=0.5)

    opt = ringred.DistributedOptimizer(make(m), named_parameters=m.named_parameters())
    for step in range(STEPS):
        opt.zero_grad()
        loss_fn(m, x[rows], y[rows]).backward()
        if step == 0:  # zero_grad while allreduces may be pending is refused
            try:
                opt.zero_grad()
            except RuntimeError as e:
                assert "zero_grad" in str(e)
            else:
                raise AssertionError("zero_grad between backward and step did not raise")
        opt.synchronize()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 0.05)
        with opt.skip_synchronize():
            opt.step()
    close(m, reference(make, clip=0.05))
    assert identical(m)
    # backward twice without a step (backward_passes_per_step=1): a clear error
    loss_fn(m, x[rows], y[rows]).backward()
    try:
        loss_fn(m, x[rows], y[rows]).backward()
    except RuntimeError as e:
        assert "backward_passes_per_step" in str(e), e
    else:
        raise AssertionError("a second backward before step did not raise")
    opt.remove_hooks()


def check_periodic_averaging(k: int = 2) -> None:
    x, y = data()
    rows = local_rows()
    m = model(0)
    opt = ringred.DistributedOptimizer(torch.optim.SGD(m.parameters(), lr=0.3), average_every=k)
    for step in range(1, 2 * k + 1):
        opt.zero_grad()
        loss_fn(m, x[rows], y[rows]).backward()
        local = [(p - 0.3 * p.grad).detach().numpy() for p in m.parameters()]
        opt.step()
        if step % k == 0:
            for p, mine in zip(m.parameters(), local, strict=True):
                expect = np.mean(ringred.allgather_object(mine), axis=0)
                assert np.max(np.abs(p.detach().numpy() - expect)) <= 1e-15
            assert identical(m)
        elif ringred.size() > 1:
            assert not identical(m)


def check_scheduler_and_delegation() -> None:
    m = model(0)
    opt = ringred.DistributedOptimizer(torch.optim.SGD(m.parameters(), lr=1.0))
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    x, y = data()
    loss_fn(m, x, y).backward()
    opt.step()
    sched.step()
    assert opt.param_groups[0]["lr"] == 0.5 == opt.optimizer.param_groups[0]["lr"]
    sd = opt.state_dict()
    opt.load_state_dict(sd)
    assert opt.defaults["lr"] == 1.0 and isinstance(opt, torch.optim.Optimizer)
    opt.remove_hooks()
    m2 = copy.deepcopy(m)
    opt = ringred.DistributedOptimizer(torch.optim.SGD(m2.parameters(), lr=1.0),
                                       op=ringred.Sum)
    n, r = ringred.size(), ringred.rank()
    w = next(m2.parameters())
    w.grad = torch.full_like(w, r + 1.0)
    for p in list(m2.parameters())[1:]:
        p.grad = torch.zeros_like(p)
    opt.synchronize()  # no hook fired: every gradient submitted here
    assert torch.all(w.grad == n * (n + 1) / 2)
    opt.remove_hooks()


def check_shared_gradients() -> None:
    """share_gradients: the same training as check_equivalence, the gradients stay the same
    shared tensors across steps, and (with the shm transport) the large one is read in place."""
    import ringred.torch as rt

    for dt in (torch.bfloat16, torch.float16, torch.int32):
        t = rt.shared_zeros_like(torch.ones(2, 3, dtype=dt))
        assert t.dtype == dt and t.shape == (2, 3) and not t.any()
    try:
        rt.shared_zeros_like(torch.ones(2, dtype=torch.complex64))
        raise AssertionError("complex64 accepted")
    except TypeError:
        pass
    x, y = data()
    rows = local_rows()
    m = model(0)
    big = torch.nn.Linear(256, 256)  # 512 KiB of float64: not fused, reduced on its own
    torch.nn.init.constant_(big.weight, 0.01)
    torch.nn.init.zeros_(big.bias)
    assert rt.share_gradients(list(m.parameters()) + list(big.parameters())) == 8
    ptrs = [p.grad.data_ptr() for p in m.parameters()]
    opt = ringred.DistributedOptimizer(sgd_nesterov(m), named_parameters=m.named_parameters())
    opt_big = ringred.DistributedOptimizer(torch.optim.SGD(big.parameters(), lr=0.1),
                                           named_parameters=big.named_parameters())
    xs, ys = x[rows], y[rows]
    before = ringred.shared.zero_copy_calls()
    for step in range(STEPS):
        opt.zero_grad(set_to_none=False)
        opt_big.zero_grad(set_to_none=False)
        loss_fn(m, xs, ys).backward()
        opt.step()
        z = torch.full((4, 256), float(ringred.rank() + step))
        big(z).sum().backward()
        opt_big.step()
    close(m, reference(sgd_nesterov))
    assert identical(m) and all(same_on_all_ranks(p.detach().numpy()) for p in big.parameters())
    assert [p.grad.data_ptr() for p in m.parameters()] == ptrs, "gradients were replaced"
    used = ringred.shared.zero_copy_calls() - before
    on_device = ringred.device.is_device_array(big.weight)  # torch CPU as device: staged
    if ringred.transport() == "shm" and ringred.size() > 1 and not on_device:
        assert used >= STEPS, used
    opt.remove_hooks()
    opt_big.remove_hooks()


def body() -> None:
    check_equivalence(sgd_nesterov, 1)
    check_equivalence(adam, 1)
    check_equivalence(sgd_nesterov, 2)
    check_equivalence(adam, 2)
    check_state_broadcast()
    check_compression()
    check_missing_gradient()
    check_clipping_and_zero_grad()
    check_periodic_averaging()
    check_scheduler_and_delegation()
    check_shared_gradients()


if __name__ == "__main__":
    main(body)
