"""``python -m ringred.bench --workload resnet50``: ResNet-50's gradients through the engine.

The 161 gradient tensors of torchvision's ResNet-50 (25,557,032 float32 values: conv
weights, batch-norm weights and biases, the fully connected layer) are submitted with
``allreduce_async`` in reverse order, as backward produces them, and waited for; the same
run times one ``MPI_Allreduce`` per tensor and one ``MPI_Allreduce`` of a NumPy-concatenated
buffer, and the latency of a 4 KiB ``allreduce_async`` + ``wait`` against the synchronous
call and ``MPI_Allreduce``.  Rounds are interleaved; medians of the slowest rank's times.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import numpy as np
from mpi4py import MPI

import ringred

from .timing import compare


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


def _time(fn: Callable[[], object], comm: MPI.Comm) -> float:
    comm.Barrier()
    t0 = time.perf_counter()
    fn()
    return comm.allreduce(time.perf_counter() - t0, op=MPI.MAX)


def run_resnet50(rounds: int = 11) -> dict[str, float]:
    """Median seconds of each way to reduce the gradient set, plus 4 KiB latencies."""
    comm = MPI.COMM_WORLD
    n = ringred.size()
    shapes = resnet50_shapes()
    grads = [np.full(s, float(ringred.rank() + 1), np.float32) for _, s in shapes]
    outs = [np.empty_like(g) for g in grads]
    total = sum(g.size for g in grads)
    concat_out = np.empty(total, np.float32)
    # the same gradients in shared buffers (ringred.empty), averaged in place as in training
    shared = [ringred.empty(g.shape, g.dtype) for g in grads]
    names = [f"resnet50/{nm}" for nm, _ in shapes]
    backward = list(range(len(grads)))[::-1]

    def engine() -> None:
        hs = [ringred.allreduce_async(grads[i], op=ringred.Sum, name=names[i], out=outs[i])
              for i in backward]
        for h in hs:
            h.wait()

    for s_, g in zip(shared, grads, strict=True):
        s_[...] = g

    def engine_shared() -> None:  # averaged in place: the values stay put round after round
        hs = [ringred.allreduce_async(shared[i], op=ringred.Average, name=names[i] + "/shared",
                                      out=shared[i]) for i in backward]
        for h in hs:
            h.wait()

    def per_tensor() -> None:
        for i in backward:
            comm.Allreduce(grads[i], outs[i], op=MPI.SUM)

    def sync_per_tensor() -> None:
        for i in backward:
            ringred.allreduce(grads[i], op=ringred.Sum, out=outs[i])

    def concatenated() -> None:
        buf = np.concatenate([grads[i].ravel() for i in backward])
        comm.Allreduce(buf, concat_out, op=MPI.SUM)

    fns = {"engine": engine, "engine_shared": engine_shared, "mpi_per_tensor": per_tensor,
           "mpi_concat": concatenated, "sync_per_tensor": sync_per_tensor}
    for fn in fns.values():  # warm-up (and fills the response cache)
        fn()
    expect = n * (n + 1) / 2
    assert all(float(o.flat[0]) == expect for o in outs), "wrong ResNet-50 result"
    assert all(float(s_.flat[0]) == expect / n for s_ in shared), "wrong ResNet-50 result"
    samples: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            samples[k].append(_time(fn, comm))
    res = {k: statistics.median(v) for k, v in samples.items()}

    x = np.ones(1024, np.float32)
    y = np.empty_like(x)

    def lat_async() -> None:
        ringred.allreduce_async(x, op=ringred.Sum, name="lat4k", out=y).wait()

    def lat_sync() -> None:
        ringred.allreduce(x, op=ringred.Sum, out=y)

    def lat_mpi() -> None:
        comm.Allreduce(x, y, op=MPI.SUM)

    lat = compare({"async": lat_async, "sync": lat_sync, "mpi": lat_mpi}, 4096, rounds, comm)
    res.update({f"lat4k_{k}": v for k, v in lat.items()})
    res["tensors"] = len(grads)
    res["elements"] = total
    return res


def format_resnet50(res: dict[str, float], n: int) -> str:
    """A small table of the medians."""
    e, p, c = res["engine"], res["mpi_per_tensor"], res["mpi_concat"]
    lines = [
        f"# ResNet-50 gradients: {int(res['tensors'])} tensors, {int(res['elements']):,} float32 "
        f"({res['elements'] * 4 / 2**20:.1f} MiB), {n} ranks, median of rounds",
        f"  ringred engine (allreduce_async, reverse order) {e * 1e3:9.2f} ms",
        f"  MPI_Allreduce per tensor                        {p * 1e3:9.2f} ms   "
        f"engine speedup {p / e:5.2f}x",
        f"  MPI_Allreduce of one concatenated buffer        {c * 1e3:9.2f} ms   "
        f"engine speedup {c / e:5.2f}x",
        f"  ringred engine, gradients in ringred.empty      {res['engine_shared'] * 1e3:9.2f} ms   "
        "(averaged in place)",
        f"  ringred.allreduce per tensor (synchronous)      {res['sync_per_tensor'] * 1e3:9.2f} ms",
        "# 4 KiB allreduce latency",
        f"  allreduce_async + wait  {res['lat4k_async'] * 1e6:8.2f} us",
        f"  ringred.allreduce       {res['lat4k_sync'] * 1e6:8.2f} us",
        f"  MPI_Allreduce           {res['lat4k_mpi'] * 1e6:8.2f} us",
    ]
    return "\n".join(lines)
