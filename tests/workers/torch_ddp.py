"""DDP on the "ringred" backend against DDP on gloo (same run, same data): parameters
bit-identical at 2 ranks, within 1e-6 otherwise; no_sync, find_unused_parameters,
static_graph and comm hooks; a shape mismatch is an error on every rank."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.distributed.algorithms.ddp_comm_hooks.default_hooks as default
import torch.distributed.algorithms.ddp_comm_hooks.powerSGD_hook as powersgd
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from .common import expect


class SmallCNN(nn.Module):
    """A small CNN with an optional branch that forward() may leave unused."""

    def __init__(self, extra: int = 0) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.bn = nn.BatchNorm2d(16)
        self.fc = nn.Linear(16 * 4 * 4, 10 + extra)
        self.unused = nn.Linear(10, 10)

    def forward(self, x: torch.Tensor, use_branch: bool = True) -> torch.Tensor:
        x = torch.relu(self.conv1(x))
        x = torch.max_pool2d(torch.relu(self.bn(self.conv2(x))), 2)
        x = self.fc(x.flatten(1))
        return self.unused(x) if use_branch else x


def _train(group, rank: int, *, steps: int = 3, hook=None, hook_state=None,
           no_sync: bool = False, unused: bool = False, static: bool = False) -> list:
    torch.manual_seed(0)
    model = SmallCNN()
    ddp = DDP(model, process_group=group, find_unused_parameters=unused, static_graph=static,
              bucket_cap_mb=0.02)  # several buckets
    if hook is default.bf16_compress_hook:
        # DDP.register_comm_hook refuses this hook without CUDA+NCCL (a check of DDP's own,
        # whatever the backend); the reducer takes it, and it runs on any backend.
        dist._register_comm_hook(ddp.reducer, group, hook)
    elif hook is not None:
        ddp.register_comm_hook(hook_state(group) if hook_state else group, hook)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.05, momentum=0.9)
    g = torch.Generator().manual_seed(100 + rank)
    for step in range(steps):
        x = torch.randn(4, 3, 8, 8, generator=g)
        y = torch.randint(0, 10, (4,), generator=g)
        opt.zero_grad()
        if no_sync and step % 2 == 0:
            with ddp.no_sync():  # accumulate locally, synchronize on the next step
                nn.functional.cross_entropy(ddp(x), y).backward()
            x = torch.randn(4, 3, 8, 8, generator=g)
        out = ddp(x, use_branch=not (unused and step % 2 == 1))
        nn.functional.cross_entropy(out, y).backward()
        opt.step()
    return [p.detach().clone() for p in model.parameters()]


def _powersgd_state(group):
    return powersgd.PowerSGDState(process_group=group, matrix_approximation_rank=1,
                                  start_powerSGD_iter=2, min_compression_rate=0.5,
                                  use_error_feedback=True, warm_start=True, random_seed=0)


CONFIGS = {
    "plain": {},
    "no_sync": {"no_sync": True},
    "find_unused_parameters": {"unused": True},
    "static_graph": {"static": True},
    "allreduce_hook": {"hook": default.allreduce_hook},
    "fp16_compress_hook": {"hook": default.fp16_compress_hook},
    "bf16_compress_hook": {"hook": default.bf16_compress_hook},
    "powerSGD": {"hook": powersgd.powerSGD_hook, "hook_state": _powersgd_state},
}


LOW_PRECISION = {"fp16_compress_hook": 1e-3, "bf16_compress_hook": 1e-2}


def run_shape_mismatch() -> None:
    """Shapes differ on the last rank: DDP raises there (only ranks whose shapes differ from
    rank 0's can tell); that rank exits, and the others' next collective fails with ringred's
    "shut down by rank ..." error instead of hanging.  Every rank prints DDP-ERROR."""
    import ringred.torch.distributed  # noqa: F401 - registers the backend

    dist.init_process_group("ringred")
    n, r = dist.get_world_size(), dist.get_rank()
    torch.manual_seed(0)
    try:
        DDP(SmallCNN(extra=int(r == n - 1)))
    except RuntimeError as exc:
        print(f"rank {r} DDP-ERROR {str(exc).splitlines()[0][:300]}", flush=True)
        raise SystemExit(3) from None  # like an uncaught error: ringred shuts down at exit


if __name__ == "__main__":
    run_shape_mismatch()


def run_ddp() -> None:
    """Every configuration on ringred and on gloo; compare the trained parameters."""
    n, r = dist.get_world_size(), dist.get_rank()
    gloo = dist.new_group(backend="gloo")
    for name, cfg in CONFIGS.items():
        print(f"rank {r}: DDP {name}", flush=True)
        got = _train(None, r, **cfg)          # the default group: ringred
        want = _train(gloo, r, **cfg)
        for a, b in zip(got, want, strict=True):
            if n <= 2:
                assert torch.equal(a, b), (name, (a - b).abs().max())
            elif name in LOW_PRECISION:
                # a sum of 3+ fp16 / bf16 values depends on the order of the additions
                # (ringred and gloo add in different orders): one rounding of the gradient
                # is ~1e-3 / 1e-2 relative, times lr over a few steps
                assert torch.allclose(a, b, rtol=0, atol=LOW_PRECISION[name]), (
                    name, (a - b).abs().max())
            else:
                assert torch.allclose(a, b, rtol=0, atol=1e-6), (name, (a - b).abs().max())
    if n > 1:
        # a model with a different number of parameters on the last rank: DDP refuses it on
        # every rank (each sees every rank's count), nobody hangs
        model = nn.Sequential(*[nn.Linear(3, 3) for _ in range(2 + (r == n - 1))])
        expect(RuntimeError, lambda: DDP(model), "DDP expects same model across all ranks")
    t = torch.ones(2)
    dist.all_reduce(t)
    assert torch.equal(t, torch.full((2,), float(n)))
