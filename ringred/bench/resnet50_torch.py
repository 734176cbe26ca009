"""The ResNet-50 benchmark's torch variants (bench/resnet50.py): the gradient set through
``ringred.torch`` on CPU tensors, and a DistributedOptimizer step with gradient hooks on
ResNet-50-shaped parameters against the same step with ``MPI_Allreduce`` per gradient after
backward and with no communication at all."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from mpi4py import MPI

import ringred
import ringred.torch as hvd

from .timing import engine_loop


def _step_variants(shapes: list, comm: MPI.Comm, Variant: Any) -> dict:
    """DistributedOptimizer(SGD) with hooks, SGD + MPI_Allreduce per gradient, SGD alone.

    The loss is the sum of every parameter's squared norm, chained so that backward
    produces the gradients last parameter first, as a network's backward does."""
    size = ringred.size()

    def model() -> list[torch.nn.Parameter]:
        return [torch.nn.Parameter(torch.full(s, 0.01)) for _, s in shapes]

    def loss(ps: list[torch.Tensor]) -> torch.Tensor:
        total = torch.zeros(())
        for p in ps:
            total = total + (p * p).sum()
        return total

    p_rr, p_mpi, p_loc = model(), model(), model()
    opt_rr = hvd.DistributedOptimizer(
        torch.optim.SGD(p_rr, lr=1e-3),
        named_parameters=[(f"step/{nm}", p) for (nm, _), p in zip(shapes, p_rr, strict=True)])
    opt_mpi = torch.optim.SGD(p_mpi, lr=1e-3)
    opt_loc = torch.optim.SGD(p_loc, lr=1e-3)

    def step_rr() -> None:
        opt_rr.zero_grad()
        loss(p_rr).backward()
        opt_rr.step()

    def step_mpi() -> None:
        opt_mpi.zero_grad()
        loss(p_mpi).backward()
        for p in reversed(p_mpi):
            comm.Allreduce(MPI.IN_PLACE, p.grad.numpy(), op=MPI.SUM)
            p.grad.div_(size)
        opt_mpi.step()

    def step_local() -> None:
        opt_loc.zero_grad()
        loss(p_loc).backward()
        opt_loc.step()

    return {
        "step_mpi": Variant("torch step, SGD + MPI_Allreduce per gradient", step_mpi),
        "step_local": Variant("torch step, SGD, no communication (floor)", step_local),
        "step": Variant("torch step, DistributedOptimizer (hooks)", step_rr, "step_mpi"),
    }


def variants(shapes: list, names: list[str], backward: list[int], rank: int, comm: MPI.Comm,
             Variant: Any) -> tuple[dict, dict[str, Callable[[], object]]]:
    """The torch variants, and the torch 4 KiB latency functions."""
    torch.set_num_threads(1)
    ts_in = [torch.full(s, float(rank + 1)) for _, s in shapes]
    ts = [torch.full(s, float(rank + 1)) for _, s in shapes]
    held: dict = {}
    Sum = hvd.Sum
    out = {
        "torch_inplace": Variant(
            "ringred.torch allreduce_async_ + synchronize", lambda: engine_loop(
                backward, lambda i: hvd.allreduce_async_(ts_in[i], name=names[i] + "/tip",
                                                         op=Sum)), "mpi_inplace", True),
        "torch_new": Variant("ringred.torch allreduce_async + synchronize (new)",
                             lambda: engine_loop(backward, lambda i: hvd.allreduce_async(
                                 ts[i], name=names[i] + "/tnew", op=Sum), held),
                             "mpi_out", True),
    }
    out.update(_step_variants(shapes, comm, Variant))
    x = torch.ones(1024)
    lat = {"torch_async_": lambda: hvd.synchronize(hvd.allreduce_async_(x, name="lat4k_t",
                                                                         op=Sum))}
    return out, lat
