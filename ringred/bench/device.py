"""Device choice for the benchmarks' torch workloads (``--device cpu|cuda|fake``).

``cuda``: torch.cuda tensors on GPU ``local_rank % device_count`` (ranks may share one GPU);
``fake``: torch CPU tensors sent through ringred's device path on the fake backend
(``ringred.testing.torch_cpu_as_device``), so that CI runs the device code paths without a
GPU (its times mean nothing); ``cpu``: ordinary host tensors.
"""

from __future__ import annotations

import os
from typing import Any

import ringred

DEVICES = ("cpu", "cuda", "fake")


def select(kind: str) -> Any:
    """The ``torch.device`` the workload's tensors live on (``fake``: CPU tensors that ringred
    treats as device memory)."""
    import torch

    if kind not in DEVICES:
        raise ValueError(f"unknown device {kind!r}; use one of {', '.join(DEVICES)}")
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("--device cuda: torch sees no CUDA device")
        idx = ringred.local_rank() % torch.cuda.device_count()
        torch.cuda.set_device(idx)
        return torch.device("cuda", idx)
    if kind == "fake":
        from ringred.testing import torch_cpu_as_device

        torch_cpu_as_device(True)
    return torch.device("cpu")


def sync(dev: Any) -> None:
    """Wait for the device's queued work (no-op for CPU tensors)."""
    if dev.type == "cuda":
        import torch

        torch.cuda.synchronize(dev)


def naive_allreduce_(t: Any, comm: Any, average: bool = True) -> None:
    """The naive way, in place: device -> NumPy, ``MPI_Allreduce``, NumPy -> device
    (then the division by the number of ranks on the device)."""
    import torch
    from mpi4py import MPI

    h = t.detach().cpu().numpy()  # a copy for CUDA tensors, the tensor's memory for CPU ones
    comm.Allreduce(MPI.IN_PLACE, h, op=MPI.SUM)
    if t.device.type != "cpu":
        t.copy_(torch.from_numpy(h))
    if average:
        t.div_(comm.Get_size())


def transport_info() -> dict[str, str]:
    """The device transports in force (``ringred.device.transport()``: ``transport`` of the
    synchronous calls' communicator, ``engine_transport`` of the background engine's) and
    the settings that choose them, for the benchmark's JSON."""
    info = {k: os.environ.get(k, "") for k in ("RINGRED_DEVICE_TRANSPORT",
                                               "RINGRED_IPC_MIN_BYTES",
                                               "RINGRED_IPC_CHUNK_BYTES")}
    name, why = ringred.device.transport()
    ename, ewhy = ringred.device.transport(engine=True)
    info.update({"transport": name, "reason": why, "engine_transport": ename,
                 "engine_reason": ewhy})
    return info


def describe(name: str, why: str) -> str:
    """``name`` or ``name (why)``: a transport and, where there is one, the reason."""
    return f"{name} ({why})" if why else name
