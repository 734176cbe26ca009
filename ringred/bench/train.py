"""Training-step benchmark: ringred.DistributedOptimizer against mpi4py after backward.

Three variants of the same PyTorch MLP step (same weights, same data), timed in interleaved
rounds (medians of the slowest rank's time per step):

* ``ringred``: ``DistributedOptimizer``: gradient hooks start each allreduce during
  backward, ``step()`` waits for them and updates;
* ``mpi4py``: backward first, then ``comm.Allreduce(MPI.IN_PLACE, grad)`` per parameter and a
  division by the number of ranks, then the update (no overlap);
* ``compute``: backward and update with no communication (the floor).

With ``device`` ``cuda`` the model, data and gradients are on the GPU (mpi4py then goes
through host copies: ``grad.cpu().numpy()``, ``MPI_Allreduce``, copy back), and every timed
round ends with a device synchronize; ``fake`` runs CPU tensors through ringred's device
path on the fake backend (a smoke test; its times mean nothing).

    mpiexec -n 2 python -m ringred.bench --workload train [--device cuda]
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable

import ringred

from . import device as devmod


def _model(width: int, depth: int, din: int, dout: int):
    import torch
    from torch import nn

    torch.manual_seed(0)
    layers: list = [nn.Linear(din, width), nn.ReLU()]
    for _ in range(depth - 1):
        layers += [nn.Linear(width, width), nn.ReLU()]
    layers.append(nn.Linear(width, dout))
    return nn.Sequential(*layers)


def run_train(rounds: int = 7, steps: int = 5, batch: int = 32, width: int = 1536,
              depth: int = 3, device: str = "cpu") -> dict:
    """Time the three variants; return medians (seconds per step) and parameter count."""
    import torch
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    size = ringred.size()
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // ringred.local_size()))
    dev = devmod.select(device)
    din, dout = 512, 10
    g = torch.Generator().manual_seed(ringred.rank())
    x = torch.randn(batch, din, generator=g).to(dev)
    y = torch.randint(0, dout, (batch,), generator=g).to(dev)
    loss_fn = torch.nn.CrossEntropyLoss()

    m_rr = _model(width, depth, din, dout).to(dev)
    opt_rr = ringred.DistributedOptimizer(torch.optim.SGD(m_rr.parameters(), lr=1e-3),
                                          named_parameters=m_rr.named_parameters())
    m_mpi = _model(width, depth, din, dout).to(dev)
    opt_mpi = torch.optim.SGD(m_mpi.parameters(), lr=1e-3)
    m_cpu = _model(width, depth, din, dout).to(dev)
    opt_cpu = torch.optim.SGD(m_cpu.parameters(), lr=1e-3)

    def step_rr() -> None:
        opt_rr.zero_grad()
        loss_fn(m_rr(x), y).backward()
        opt_rr.step()

    def step_mpi() -> None:
        opt_mpi.zero_grad()
        loss_fn(m_mpi(x), y).backward()
        for p in m_mpi.parameters():
            if dev.type == "cpu":
                comm.Allreduce(MPI.IN_PLACE, p.grad.numpy(), op=MPI.SUM)
                p.grad.div_(size)
            else:
                devmod.naive_allreduce_(p.grad, comm)
        opt_mpi.step()

    def step_cpu() -> None:
        opt_cpu.zero_grad()
        loss_fn(m_cpu(x), y).backward()
        opt_cpu.step()

    fns: dict[str, Callable[[], None]] = {"ringred": step_rr, "mpi4py": step_mpi,
                                          "compute": step_cpu}
    for fn in fns.values():  # warm-up
        fn()
    devmod.sync(dev)
    samples: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            comm.Barrier()
            t0 = time.perf_counter()
            for _ in range(steps):
                fn()
            devmod.sync(dev)
            samples[name].append(comm.allreduce((time.perf_counter() - t0) / steps, op=MPI.MAX))
    same = all(
        torch.equal(a, b) for a, b in zip(m_rr.parameters(), m_mpi.parameters(), strict=True)
    )
    opt_rr.remove_hooks()
    res = {
        "params": sum(p.numel() for p in m_rr.parameters()),
        "median_s": {k: statistics.median(v) for k, v in samples.items()},
        "same_weights": same,
        "ranks": size,
        "batch": batch,
        "device": device,
    }
    if device != "cpu":
        res.update(devmod.transport_info())
    if dev.type == "cuda":
        res["gpu"] = torch.cuda.get_device_name(dev)
    return res


def format_train(res: dict) -> str:
    """A small table of the medians and the ringred/mpi4py ratio."""
    med = res["median_s"]
    mb = res["params"] * 4 / 2**20
    dev = res.get("device", "cpu")
    where = f" on {dev}" + (f" ({res['gpu']})" if "gpu" in res else "")
    lines = [
        f"training step{where}, MLP with {res['params'] / 1e6:.2f} M float32 parameters "
        f"({mb:.1f} MiB of gradients), batch {res['batch']} per rank, {res['ranks']} ranks",
        f"{'variant':<10} {'ms/step':>9}",
    ]
    for k in ("ringred", "mpi4py", "compute"):
        lines.append(f"{k:<10} {med[k] * 1e3:9.2f}")
    lines.append(f"ratio ringred / mpi4py = {med['ringred'] / med['mpi4py']:.3f} (lower is better)"
                 f"; communication beyond compute: ringred "
                 f"{(med['ringred'] - med['compute']) * 1e3:.2f} ms, mpi4py "
                 f"{(med['mpi4py'] - med['compute']) * 1e3:.2f} ms")
    lines.append(f"weights identical between ringred and mpi4py runs: {res['same_weights']}")
    if "transport" in res:
        lines.append("device transport of the engine: "
                     f"{devmod.describe(res['engine_transport'], res['engine_reason'])}; "
                     "RINGRED_DEVICE_TRANSPORT="
                     f"{res['RINGRED_DEVICE_TRANSPORT'] or '(unset)'}")
    return "\n".join(lines)
