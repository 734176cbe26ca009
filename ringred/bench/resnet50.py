"""``python -m ringred.bench --workload resnet50``: ResNet-50's gradients through the engine.

The 161 gradient tensors of torchvision's ResNet-50 (25,557,032 float32 values: conv
weights, batch-norm weights and biases, the fully connected layer) are submitted with
``allreduce_async`` in reverse order, as backward produces them, and waited for.  Each way
of getting the results is timed against ``MPI_Allreduce`` per tensor with the same output
style, in the same interleaved rounds:

* in place (``out=g``; ``MPI_IN_PLACE``), the DistributedOptimizer pattern;
* new result arrays (``avg = allreduce_async(g).wait()``; MPI into preallocated outputs),
  the previous round's results held while the next round is submitted, as a training loop
  holds its averaged gradients until they are replaced;
* preallocated outputs (``out=outs[i]``; the same MPI call);
* shared buffers (gradients in ``ringred.empty``, in place; ``MPI_IN_PLACE``);
* through ``ringred.torch`` on CPU tensors (``allreduce_async_`` + ``synchronize``, in place;
  ``allreduce_async`` + ``synchronize``, new tensors), when torch is installed;

plus a DistributedOptimizer training step with gradient hooks on ResNet-50-shaped torch
parameters (bench/resnet50_torch.py), and the latency of a 4 KiB ``allreduce_async`` +
``wait``.  For every engine variant the engine's phase counters (``Engine.phases``:
negotiation, fusion copy-in, reduction, copy-out, waiting) and the Python time of the
submission and wait loops are reported per round.  Medians of the slowest rank's times.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import numpy as np
from mpi4py import MPI

import ringred

from .timing import compare, engine_loop


def resnet50_shapes() -> list[tuple[str, tuple[int, ...]]]:
    """(name, shape) of every ResNet-50 parameter, in torchvision's ``named_parameters`` order."""
    params: list[tuple[str, tuple[int, ...]]] = []

    def conv(name: str, cout: int, cin: int, k: int) -> None:
        params.append((f"{name}.weight", (cout, cin, k, k)))

    def bn(name: str, c: int) -> None:
        params.append((f"{name}.weight", (c,)))
        params.append((f"{name}.bias", (c,)))

    conv("conv1", 64, 3, 7)
    bn("bn1", 64)
    inplanes = 64
    for layer, (planes, blocks) in enumerate(zip((64, 128, 256, 512), (3, 4, 6, 3),
                                                 strict=True), start=1):
        for b in range(blocks):
            pre = f"layer{layer}.{b}"
            conv(f"{pre}.conv1", planes, inplanes, 1)
            bn(f"{pre}.bn1", planes)
            conv(f"{pre}.conv2", planes, planes, 3)
            bn(f"{pre}.bn2", planes)
            conv(f"{pre}.conv3", planes * 4, planes, 1)
            bn(f"{pre}.bn3", planes * 4)
            if b == 0:
                conv(f"{pre}.downsample.0", planes * 4, inplanes, 1)
                bn(f"{pre}.downsample.1", planes * 4)
            inplanes = planes * 4
    params.append(("fc.weight", (1000, 2048)))
    params.append(("fc.bias", (1000,)))
    return params


PHASES = ("negotiate_s", "copy_in_s", "reduce_s", "copy_out_s", "wait_s")
COUNTS = ("fused", "direct", "units")


def shrunk_shapes(shrink: int = 1) -> list[tuple[str, tuple[int, ...]]]:
    """ResNet-50's shapes, or (``shrink`` > 1) flat ones ``shrink`` times smaller (smoke tests)."""
    shapes = resnet50_shapes()
    if shrink <= 1:
        return shapes
    return [(nm, (max(1, int(np.prod(s)) // shrink),)) for nm, s in shapes]


class Variant:
    """One timed way of reducing the set: ``fn()`` returns (submit seconds, wait seconds) for
    engine variants, None otherwise; ``base`` names the MPI variant it is compared with."""

    def __init__(self, label: str, fn: Callable[[], object], base: str | None = None,
                 engine: bool = False):
        self.label, self.fn, self.base, self.engine = label, fn, base, engine
        self.times: list[float] = []
        self.phases: list[dict[str, float]] = []


def _run_once(v: Variant, comm: MPI.Comm, eng) -> None:
    comm.Barrier()
    p0 = eng.phases() if v.engine else None
    t0 = time.perf_counter()
    extra = v.fn()
    dt = time.perf_counter() - t0
    if v.engine:
        p1 = eng.phases()
        ph = {k: p1[k] - p0[k] for k in p1}
        ph["submit_py_s"], ph["wait_py_s"] = extra  # type: ignore[misc]
        v.phases.append(ph)
    v.times.append(comm.allreduce(dt, op=MPI.MAX))


def run_resnet50(rounds: int = 7, shrink: int = 1, torch_variants: bool = True,
                 only: list[str] | None = None, lat_iters: int | None = None) -> dict:
    """Median seconds of each way to reduce the gradient set, same-run ratios against the
    MPI variant with the same output style, phase breakdowns, and 4 KiB latencies."""
    comm = MPI.COMM_WORLD
    shapes = shrunk_shapes(shrink)
    rank = ringred.rank()

    def fresh() -> list[np.ndarray]:
        return [np.full(s, float(rank + 1), np.float32) for _, s in shapes]

    grads, g_inplace, g_mpi_inplace = fresh(), fresh(), fresh()
    outs, mpi_outs = [np.empty_like(g) for g in grads], [np.empty_like(g) for g in grads]
    shared = [ringred.empty(g.shape, g.dtype) for g in grads]
    for s_, g in zip(shared, grads, strict=True):
        s_[...] = g
    names = [f"resnet50/{nm}" for nm, _ in shapes]
    backward = list(range(len(grads)))[::-1]
    Sum = ringred.Sum
    held: dict = {}
    ar = ringred.allreduce_async

    def mpi_inplace() -> None:
        for i in backward:
            comm.Allreduce(MPI.IN_PLACE, g_mpi_inplace[i], op=MPI.SUM)

    def mpi_out() -> None:
        for i in backward:
            comm.Allreduce(grads[i], mpi_outs[i], op=MPI.SUM)

    variants = {
        "mpi_inplace": Variant("MPI_Allreduce per tensor, MPI_IN_PLACE", mpi_inplace),
        "mpi_out": Variant("MPI_Allreduce per tensor, preallocated outputs", mpi_out),
        "inplace": Variant("engine, in place (out=g)", lambda: engine_loop(
            backward, lambda i: ar(g_inplace[i], op=Sum, name=names[i] + "/ip",
                                   out=g_inplace[i])), "mpi_inplace", True),
        "new": Variant("engine, new result arrays", lambda: engine_loop(
            backward, lambda i: ar(grads[i], op=Sum, name=names[i] + "/new"), held),
            "mpi_out", True),
        "out": Variant("engine, preallocated outputs (out=outs[i])", lambda: engine_loop(
            backward, lambda i: ar(grads[i], op=Sum, name=names[i] + "/out", out=outs[i])),
            "mpi_out", True),
        "shared": Variant("engine, shared buffers (ringred.empty), in place", lambda: engine_loop(
            backward, lambda i: ar(shared[i], op=Sum, name=names[i] + "/shared",
                                   out=shared[i])), "mpi_inplace", True),
    }
    torch_lat = None
    if torch_variants and (not only or any(k.startswith(("torch", "step")) for k in only)):
        try:
            from . import resnet50_torch
        except ImportError:  # torch not installed
            resnet50_torch = None  # type: ignore[assignment]
        if resnet50_torch is not None:
            extra, torch_lat = resnet50_torch.variants(shapes, names, backward, rank, comm,
                                                       Variant)
            variants.update(extra)

    if only:  # a subset (with the MPI variants they are compared with)
        keep = set(only) | {variants[k].base for k in only if k in variants} - {None}
        variants = {k: v for k, v in variants.items() if k in keep}
    eng = ringred._state.current().get_engine()
    warm = 2  # warm-up rounds (the response cache; the result pool, double-buffered)
    for _ in range(warm):
        for v in variants.values():
            v.fn()
    new = held.get("res", outs)
    want = float(sum(range(1, ringred.size() + 1)))
    again = want * ringred.size() ** (warm - 1)  # in place: summed once per warm-up round
    ran = {"out": (outs, want), "mpi_out": (mpi_outs, want), "new": (new, want),
           "inplace": (g_inplace, again), "mpi_inplace": (g_mpi_inplace, again),
           "shared": (shared, again)}
    for i in range(len(grads)):
        for arr, w in ((a[i], w) for k, (a, w) in ran.items() if k in variants):
            if not np.all(arr == w):
                raise AssertionError(f"wrong ResNet-50 result for {names[i]}")
    for v in variants.values():
        v.times.clear()
        v.phases.clear()
    held.clear()
    for _ in range(rounds):
        for v in variants.values():
            _run_once(v, comm, eng)

    res: dict = {"tensors": len(grads), "elements": int(sum(g.size for g in grads)),
                 "ranks": ringred.size(), "rounds": rounds, "variants": {}}
    for key, v in variants.items():
        row: dict = {"label": v.label, "median_s": statistics.median(v.times)}
        if v.base is not None:
            base = variants[v.base]
            row["base"] = v.base
            row["ratio"] = statistics.median(
                b / t for b, t in zip(base.times, v.times, strict=True))
        if v.phases:
            row["phases"] = {k: statistics.median(p[k] for p in v.phases)
                             for k in (*PHASES, "submit_py_s", "wait_py_s", *COUNTS)}
        res["variants"][key] = row

    x = np.ones(1024, np.float32)
    y = np.empty_like(x)
    lat = {"async": lambda: ar(x, op=Sum, name="lat4k", out=y).wait(),
           "sync": lambda: ringred.allreduce(x, op=Sum, out=y),
           "mpi": lambda: comm.Allreduce(x, y, op=MPI.SUM)}
    if torch_lat is not None:
        lat.update(torch_lat)
    res["lat4k"] = compare(lat, 4096, rounds, comm, iters=lat_iters)
    return res


def format_resnet50(res: dict) -> str:
    """Tables of the medians, same-run ratios and phases."""
    V = res["variants"]
    lines = [
        f"# ResNet-50 gradients: {res['tensors']} tensors, {res['elements']:,} float32 "
        f"({res['elements'] * 4 / 2**20:.1f} MiB), {res['ranks']} ranks, medians of "
        f"{res['rounds']} interleaved rounds (slowest rank)",
        f"  {'variant':<52} {'ms':>8}  {'vs':<12} {'MPI/ringred':>11}",
    ]
    for row in V.values():
        ratio = f"{row['ratio']:10.2f}x" if "ratio" in row else ""
        lines.append(f"  {row['label']:<52} {row['median_s'] * 1e3:8.2f}  "
                     f"{row.get('base', ''):<12} {ratio:>11}")
    lines.append("# phases per round, rank 0, ms (Python: submission loop, wait loop; engine: "
                 "negotiation, fusion copy-in, reduction, copy-out, user threads in C waits)")
    lines.append(f"  {'variant':<16} {'submit':>7} {'wait':>7} | {'negot':>7} {'copyin':>7} "
                 f"{'reduce':>7} {'copyout':>7} {'C wait':>7} | fused direct units")
    for key, row in V.items():
        ph = row.get("phases")
        if not ph:
            continue
        ms = [ph[k] * 1e3 for k in ("submit_py_s", "wait_py_s", *PHASES)]
        lines.append(f"  {key:<16} {ms[0]:7.2f} {ms[1]:7.2f} | {ms[2]:7.2f} {ms[3]:7.2f} "
                     f"{ms[4]:7.2f} {ms[5]:7.2f} {ms[6]:7.2f} | {ph['fused']:5.0f} "
                     f"{ph['direct']:6.0f} {ph['units']:5.0f}")
    lines.append("# 4 KiB allreduce latency")
    for k, v in res["lat4k"].items():
        lines.append(f"  {k:<22} {v * 1e6:8.2f} us")
    return "\n".join(lines)
