"""DistributedOptimizer on a model on the device: data-parallel training over the ranks, each
on its shard of the batch, equals single-process full-batch training.

float32 on the GPU (TF32 off), Adam and SGD with momentum 0.9.  Every rank starts from its
own random weights, takes rank 0's through ``broadcast_parameters`` (and the optimizer state
through ``broadcast_optimizer_state``), then trains STEPS steps with gradient hooks on the
device gradients.  Each rank also trains the reference model on the whole batch alone; the
parameters must agree within TOL, and be identical on every rank.

Usage: python -m tests.workers.gpu_train [cuda|fake|cpu]
(fake: torch CPU tensors through the device path on the fake backend, no GPU; cpu: the host
path, a check of this worker itself)
"""

from __future__ import annotations

import sys

import torch

import ringred

from .common import main, same_on_all_ranks

BATCH, DIN, HID, DOUT, STEPS = 32, 16, 32, 4, 6
TOL = 1e-5
MODE = sys.argv[1] if len(sys.argv) > 1 else "cuda"


def device() -> torch.device:
    if MODE in ("fake", "cpu"):
        if MODE == "fake":
            from ringred.testing import torch_cpu_as_device

            torch_cpu_as_device(True)
        torch.set_num_threads(1)
        return torch.device("cpu")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    idx = ringred.local_rank() % torch.cuda.device_count()
    torch.cuda.set_device(idx)
    return torch.device("cuda", idx)


def model(seed: int, dev: torch.device) -> torch.nn.Module:
    torch.manual_seed(seed)
    m = torch.nn.Sequential(
        torch.nn.Linear(DIN, HID), torch.nn.Tanh(), torch.nn.Linear(HID, HID), torch.nn.Tanh(),
        torch.nn.Linear(HID, DOUT))
    return m.to(dev)


def batch(dev: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(5)
    return torch.randn(BATCH, DIN, generator=g).to(dev), torch.randn(BATCH, DOUT,
                                                                     generator=g).to(dev)


OPTIMIZERS = {
    "adam": lambda ps: torch.optim.Adam(ps, lr=1e-3),
    "sgd-momentum": lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9),
}


def train(name: str, dev: torch.device) -> None:
    n, r = ringred.size(), ringred.rank()
    x, y = batch(dev)
    loss = torch.nn.functional.mse_loss
    ref = model(100, dev)
    ref_opt = OPTIMIZERS[name](ref.parameters())
    for _ in range(STEPS):
        ref_opt.zero_grad()
        loss(ref(x), y).backward()
        ref_opt.step()

    m = model(100 + r, dev)  # rank 0's weights are the reference's starting point
    ringred.broadcast_parameters(m.state_dict(), root_rank=0)
    opt = OPTIMIZERS[name](m.parameters())
    ringred.broadcast_optimizer_state(opt, root_rank=0)
    opt = ringred.DistributedOptimizer(opt, named_parameters=m.named_parameters())
    per = BATCH // n
    rows = slice(r * per, (r + 1) * per)
    for _ in range(STEPS):
        opt.zero_grad()
        loss(m(x[rows]), y[rows]).backward()
        opt.step()
    worst = 0.0
    for (pn, p), q in zip(m.named_parameters(), ref.parameters(), strict=True):
        assert p.device == dev and p.grad is not None and p.grad.device == dev, pn
        err = float((p.detach() - q.detach()).abs().max())
        worst = max(worst, err)
        assert err <= TOL, f"{name}: {pn} differs from full-batch training by {err:.3g}"
        assert same_on_all_ranks(p.detach().cpu().numpy()), f"{name}: {pn} differs by rank"
    opt.remove_hooks()
    print(f"rank {r}: {name} on {dev}: {STEPS} steps match full-batch training (largest "
          f"difference {worst:.2g})", flush=True)


def body() -> None:
    assert BATCH % ringred.size() == 0
    dev = device()
    for name in OPTIMIZERS:
        train(name, dev)


if __name__ == "__main__":
    main(body)
