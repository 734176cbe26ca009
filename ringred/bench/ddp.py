"""``python -m ringred.bench --workload ddp``: DDP on the "ringred" backend against gloo.

A model with ResNet-50's 161 parameter shapes (25.6 M float32 values) and a forward that
costs next to nothing (one element of each parameter, so that backward still produces every
gradient in full and communication dominates) is trained with ``DistributedDataParallel``
(default options) three times in the same run: on the default "ringred" group, on a gloo
group over the same ranks, and with a comm hook that skips the allreduce (the floor for any
backend); rounds alternate between them.  Two timings: forward +
backward (DDP's allreduces, overlapped with backward) and the full step with an SGD update.
The same run times ``dist.all_reduce`` on both groups and ``ringred.allreduce`` on the same
tensor, for a sweep of sizes.  Medians over rounds of the slowest rank's time, after a
warm-up long enough for the process group's recurring engine names to be in the engine's
response cache (the steady state of a training loop; every variant gets the same warm-up).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.distributed as dist
from mpi4py import MPI
from torch import nn

from ringred.torch.distributed._pg import NAME_CYCLE

from .resnet50 import resnet50_shapes
from .timing import compare, human

SIZES = [4 << 10, 64 << 10, 1 << 20, 16 << 20]


class ShapedModel(nn.Module):
    """ResNet-50's parameter shapes; forward is a weighted sum of the parameters."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        shapes = resnet50_shapes()
        self.ps = nn.ParameterList([nn.Parameter(torch.randn(s) * 0.01) for _, s in shapes])

    def forward(self, scale: torch.Tensor) -> torch.Tensor:
        return torch.stack([p.reshape(-1)[0] for p in self.ps]).sum() * scale


def _no_comm(_state, bucket):  # noqa: ANN001, ANN202 - DDP checks real annotations only
    """A comm hook that communicates nothing: the bucket comes back as it is."""
    fut: torch.futures.Future = torch.futures.Future()
    fut.set_result(bucket.buffer())
    return fut


def _step_fns(group: dist.ProcessGroup | None, comm: bool = True) -> tuple[
        Callable[[], None], Callable[[], None]]:
    """(forward + backward, full step with SGD) of DDP over ``group``; ``comm=False``: the
    same DDP with a hook that skips the allreduce (what the step costs without any
    communication, with every rank running: the floor for every backend)."""
    model = ShapedModel()
    ddp = nn.parallel.DistributedDataParallel(model, process_group=group)
    if not comm:
        ddp.register_comm_hook(None, _no_comm)
    opt = torch.optim.SGD(ddp.parameters(), lr=1e-3)
    scale = torch.ones(())

    def fwd_bwd() -> None:
        opt.zero_grad()
        ddp(scale).backward()

    def step() -> None:
        fwd_bwd()
        opt.step()

    return fwd_bwd, step


def _times(fns: dict[str, Callable[[], None]], rounds: int, steps: int,
           comm: MPI.Comm, warm: int) -> dict[str, float]:
    for fn in fns.values():
        for _ in range(warm):  # DDP rebuilds its buckets after the first iteration, and
            fn()               # the process group's engine names recur from NAME_CYCLE on
    return compare(fns, 0, rounds, comm, iters=steps)


def run_ddp(rounds: int = 5, steps: int = 3) -> dict:
    """Time the DDP step and the allreduce sweep; rank 0's dict of medians (seconds)."""
    import ringred.torch.distributed  # noqa: F401 - registers the backend

    if not dist.is_initialized():
        dist.init_process_group("ringred")
    gloo = dist.new_group(backend="gloo")
    comm = MPI.COMM_WORLD
    nparams = sum(int(torch.tensor(s).prod()) for _, s in resnet50_shapes())
    (rfb, rstep), (gfb, gstep) = _step_fns(None), _step_fns(gloo)
    nfb, nstep = _step_fns(None, comm=False)
    # steady state: every name of the group's cycle seen once (5 bucket allreduces a step)
    warm = NAME_CYCLE // 5 + 2
    for fn in (rstep, gstep, nstep):
        for _ in range(warm):
            fn()
    step = _times({"ringred fwd+bwd": rfb, "gloo fwd+bwd": gfb, "none fwd+bwd": nfb,
                   "ringred step": rstep, "gloo step": gstep, "none step": nstep},
                  rounds, steps, comm, 1)
    sweep = []
    for nbytes in SIZES:
        x = torch.ones(nbytes // 4)
        a = x.numpy()
        fns = {
            "dist.all_reduce ringred": lambda x=x: dist.all_reduce(x),
            "dist.all_reduce gloo": lambda x=x: dist.all_reduce(x, group=gloo),
            "ringred.allreduce": lambda a=a: ringred.allreduce(a, op=ringred.Sum, out=a),
            "ringred.allreduce_async": lambda a=a: ringred.allreduce_async(
                a, op=ringred.Sum, out=a, name="bench.ddp.async").wait(),
        }
        for fn in fns.values():  # steady state (see above), for every variant alike
            for _ in range(NAME_CYCLE + 10):
                fn()
        sweep.append({"bytes": nbytes, **compare(fns, nbytes, max(rounds, 5), comm)})
    return {"ranks": dist.get_world_size(), "params": nparams, "step": step, "sweep": sweep}


def format_ddp(res: dict) -> str:
    """Markdown tables of run_ddp's result."""
    st = res["step"]
    lines = [
        f"DDP on a ResNet-50-shaped model ({res['params']:,} float32 parameters), "
        f"{res['ranks']} ranks, medians:",
        "",
        "| | ringred | gloo | gloo / ringred | no communication | gloo / no communication |",
        "|---|---|---|---|---|---|",
    ]
    for what in ("fwd+bwd", "step"):
        r, g, z = st[f"ringred {what}"], st[f"gloo {what}"], st[f"none {what}"]
        label = "forward + backward" if what == "fwd+bwd" else "step (+ SGD update)"
        lines.append(f"| {label} | {r * 1e3:.1f} ms | {g * 1e3:.1f} ms | {g / r:.2f}x | "
                     f"{z * 1e3:.1f} ms | {g / z:.2f}x |")
    lines += ["", "No communication: the same DDP with a comm hook that skips the allreduce, "
              "every rank running; gloo / no communication bounds what any backend can gain."]
    lines += [
        "",
        "| size | dist.all_reduce ringred | dist.all_reduce gloo | ringred.allreduce | "
        "ringred.allreduce_async + wait | gloo / ringred | dist ringred / ringred.allreduce |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in res["sweep"]:
        r, g, d, e = (row["dist.all_reduce ringred"], row["dist.all_reduce gloo"],
                      row["ringred.allreduce"], row["ringred.allreduce_async"])
        lines.append(f"| {human(row['bytes'])} | {r * 1e6:.1f} us | {g * 1e6:.1f} us | "
                     f"{d * 1e6:.1f} us | {e * 1e6:.1f} us | {g / r:.2f}x | {r / d:.2f}x |")
    return "\n".join(lines)
