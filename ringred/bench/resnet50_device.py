"""``python -m ringred.bench --workload resnet50 --device cuda``: ResNet-50's gradients on
the device.

The 161 float32 gradients of ResNet-50 (:func:`resnet50_shapes`) as torch tensors on the
device, averaged in place three ways, all in the same run (interleaved rounds, medians of
the slowest rank's time, each variant ending with a device synchronize):

* ``engine``: ``allreduce_async(g, out=g)`` for every gradient in reverse order (as
  backward produces them and DistributedOptimizer submits them), then ``wait()`` on all;
* ``sync_per_tensor``: ``ringred.allreduce(g, out=g)`` per gradient;
* ``naive_per_tensor``: per gradient ``g.cpu().numpy()``, ``MPI_Allreduce``, copy back,
  divide (what a script without a device-aware library does);
* ``naive_concat``: one concatenated buffer through the same naive path.

Plus the 4 KiB latency of each path.  The device transport in force (``ipc`` or ``staged``,
``RINGRED_DEVICE_TRANSPORT``) is reported with the results.  ``--device fake`` runs the same
code on CPU tensors through the fake device backend (a smoke test; its times mean nothing).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from typing import Any

from mpi4py import MPI

import ringred

from . import device as devmod
from .resnet50 import resnet50_shapes

VARIANTS = ("engine", "sync_per_tensor", "naive_per_tensor", "naive_concat")


def _time(fn: Callable[[], object], comm: MPI.Comm) -> float:
    """Seconds of ``fn()`` on the slowest rank, all ranks starting together."""
    comm.Barrier()
    t0 = time.perf_counter()
    fn()
    return comm.allreduce(time.perf_counter() - t0, op=MPI.MAX)


def _shapes(shrink: int) -> list[tuple[str, tuple[int, ...]]]:
    """The ResNet-50 shapes; with ``shrink`` > 1 every tensor becomes a flat one with
    1/shrink of the elements (at least one): same count of tensors, less data (smoke tests)."""
    shapes = resnet50_shapes()
    if shrink <= 1:
        return shapes
    return [(nm, (max(1, math.prod(s) // shrink),)) for nm, s in shapes]


def run_resnet50_device(kind: str, rounds: int = 5, shrink: int = 1,
                        lat_iters: int = 100) -> dict[str, Any]:
    """Median seconds of each variant over the gradient set, 4 KiB latencies, and what was
    run; every variant's result is checked before timing."""
    import torch

    comm = MPI.COMM_WORLD
    n, r = ringred.size(), ringred.rank()
    dev = devmod.select(kind)
    shapes = _shapes(shrink)
    names = [f"resnet50/{nm}" for nm, _ in shapes]
    backward = list(range(len(shapes)))[::-1]
    scale = [float(i % 7 + 1) for i in range(len(shapes))]
    grads = [torch.empty(s, dtype=torch.float32, device=dev) for _, s in shapes]

    def engine() -> None:
        hs = [ringred.allreduce_async(grads[i], op=ringred.Average, name=names[i],
                                      out=grads[i]) for i in backward]
        for h in hs:
            h.wait()
        devmod.sync(dev)

    def sync_per_tensor() -> None:
        for i in backward:
            ringred.allreduce(grads[i], op=ringred.Average, out=grads[i])
        devmod.sync(dev)

    def naive_per_tensor() -> None:
        for i in backward:
            devmod.naive_allreduce_(grads[i], comm)
        devmod.sync(dev)

    def naive_concat() -> None:
        buf = torch.cat([grads[i].reshape(-1) for i in backward])
        devmod.naive_allreduce_(buf, comm)
        off = 0
        for i in backward:
            k = grads[i].numel()
            grads[i].copy_(buf[off:off + k].view_as(grads[i]))
            off += k
        devmod.sync(dev)

    fns: dict[str, Callable[[], None]] = {"engine": engine, "sync_per_tensor": sync_per_tensor,
                                          "naive_per_tensor": naive_per_tensor,
                                          "naive_concat": naive_concat}
    avg = (n + 1) / 2  # the mean of 1 .. n
    for name, fn in fns.items():
        for g, s in zip(grads, scale, strict=True):
            g.fill_((r + 1) * s)
        fn()
        worst = max(float((g - avg * s).abs().max()) / (avg * s) if g.numel() else 0.0
                    for g, s in zip(grads, scale, strict=True))
        worst = comm.allreduce(worst, op=MPI.MAX)
        if not worst <= 1e-6:
            raise AssertionError(f"resnet50 --device {kind}: {name} gives a wrong average "
                                 f"(relative error {worst:.3g})")
    # In-place averages of equal values keep them (up to rounding): every variant keeps
    # reducing the same data round after round.
    samples: dict[str, list[float]] = {k: [] for k in fns}
    eng = ringred._state.current().engine
    cycles = []
    for _ in range(rounds):
        for k, fn in fns.items():
            c0 = eng.stats()["cycles"]
            samples[k].append(_time(fn, comm))
            if k == "engine":
                cycles.append(eng.stats()["cycles"] - c0)
    res: dict[str, Any] = {k: statistics.median(v) for k, v in samples.items()}
    res["engine_cycles"] = statistics.median(cycles)
    res.update(_latency(dev, comm, rounds, lat_iters))
    res.update({"tensors": len(grads), "elements": sum(g.numel() for g in grads),
                "device": kind, "shrink": shrink, "rounds": rounds})
    res.update(devmod.transport_info())
    if dev.type == "cuda":
        res["gpu"] = torch.cuda.get_device_name(dev)
    return res


def _latency(dev: Any, comm: MPI.Comm, rounds: int, iters: int) -> dict[str, float]:
    """Seconds per 4 KiB average (1024 float32, in place) through each path."""
    import torch

    x = torch.ones(1024, dtype=torch.float32, device=dev)

    def lat_async() -> None:
        ringred.allreduce_async(x, op=ringred.Average, name="lat4k", out=x).wait()

    def lat_sync() -> None:
        ringred.allreduce(x, op=ringred.Average, out=x)

    def lat_naive() -> None:
        devmod.naive_allreduce_(x, comm)

    fns = {"async": lat_async, "sync": lat_sync, "naive": lat_naive}

    def timed(fn: Callable[[], None]) -> None:
        for _ in range(iters):
            fn()
        devmod.sync(dev)

    for fn in fns.values():
        timed(fn)
    samples: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            samples[k].append(_time(lambda fn=fn: timed(fn), comm) / iters)
    if float(x.min()) != 1.0 or float(x.max()) != 1.0:
        raise AssertionError("4 KiB latency: the in-place average of ones is not one")
    return {f"lat4k_{k}": statistics.median(v) for k, v in samples.items()}


def format_resnet50_device(res: dict[str, Any], n: int) -> str:
    """A small table of the medians and the speedups of the engine (same run)."""
    e = res["engine"]
    mib = res["elements"] * 4 / 2**20
    where = res.get("gpu", res["device"])
    lines = [
        f"# ResNet-50 gradients on {res['device']} ({where}): {res['tensors']} tensors, "
        f"{res['elements']:,} float32 ({mib:.1f} MiB), {n} ranks, median of {res['rounds']} "
        f"rounds",
        f"# device transport: engine "
        f"{devmod.describe(res['engine_transport'], res['engine_reason'])}, synchronous "
        f"calls {devmod.describe(res['transport'], res['reason'])}; "
        f"RINGRED_DEVICE_TRANSPORT={res['RINGRED_DEVICE_TRANSPORT'] or '(unset)'}",
        f"  ringred engine (allreduce_async in place, reverse order) {e * 1e3:9.2f} ms",
    ]
    for k, label in (("sync_per_tensor", "ringred.allreduce per tensor (synchronous)"),
                     ("naive_per_tensor", "naive per tensor (->NumPy, MPI_Allreduce, ->dev)"),
                     ("naive_concat", "naive, one concatenated buffer")):
        lines.append(f"  {label:<55} {res[k] * 1e3:9.2f} ms   engine speedup "
                     f"{res[k] / e:5.2f}x")
    lines.append(f"  engine cycles per gradient set (median): {res.get('engine_cycles', 0):g}")
    lines += [
        "# 4 KiB average latency (in place)",
        f"  allreduce_async + wait  {res['lat4k_async'] * 1e6:9.2f} us",
        f"  ringred.allreduce       {res['lat4k_sync'] * 1e6:9.2f} us",
        f"  naive                   {res['lat4k_naive'] * 1e6:9.2f} us",
    ]
    return "\n".join(lines)
