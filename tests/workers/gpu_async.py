"""Asynchronous (engine) collectives on GPU tensors whose producer is still running.

Many small tensors and a few large ones (float32, with float16 and int32 among them) are
filled with a sentinel, then overwritten by a kernel queued on a non-blocking stream behind
~60 ms of other work (matmuls, their count timed here), and handed to the engine from that
stream: named ``allreduce_async`` (some in place, ``out=x``), one
``grouped_allreduce_async`` of small ones, and a ``broadcast_async``.  The test checks that
the stream was still busy when the last tensor was submitted (else it would prove nothing),
that every result is the reduction of the *written* values, and that work queued on the
producer stream after ``wait()`` sees the result.  CuPy arrays and torch.cuda tensors.

Usage: python -m tests.workers.gpu_async
"""

from __future__ import annotations

import math
import time

import cupy as cp
import numpy as np

import ringred

from .common import main
from .gpu import use_device

SENTINEL = -12345.0
SMALL = [1 + 37 * i for i in range(48)]  # 1 .. 1740 elements
LARGE = [3_000_001, 1 << 22]
DTYPES = {0: np.float16, 5: np.int32}  # index % 6 -> dtype; the rest float32
BUSY_S = 0.06  # queued work ahead of the producer kernel


def busy_iters(step, sync) -> int:
    """How many ``step()`` calls (a 4096^2 matmul + tanh) take about BUSY_S here (timed)."""
    step()
    sync()
    t0 = time.perf_counter()
    for _ in range(3):
        step()
    sync()
    per = (time.perf_counter() - t0) / 3
    return max(10, min(5000, math.ceil(BUSY_S / max(per, 1e-6))))


def pattern(i: int, count: int) -> np.ndarray:
    """Tensor i's base values: small integers, exact in float16 sums of a few ranks."""
    return ((np.arange(count, dtype=np.int64) * 7 + i) % 97).astype(np.float64)


def dtype_of(i: int) -> np.dtype:
    return np.dtype(DTYPES.get(i % 6, np.float32))


def expected(i: int, count: int, op: str, n: int) -> np.ndarray:
    base = pattern(i, count)
    total = base * (n * (n + 1) / 2)  # rank q contributes base * (q + 1)
    dt = dtype_of(i)
    if op == "sum":
        return total.astype(dt)
    if dt.kind == "i":
        return (total // n).astype(dt)  # exact: integer Average truncates, values are >= 0
    return (total / n).astype(dt)


def check(name: str, got: np.ndarray, want: np.ndarray) -> None:
    if np.issubdtype(want.dtype, np.integer):
        ok = np.array_equal(got, want)
    else:
        ok = np.allclose(got.astype(np.float64), want.astype(np.float64), rtol=1e-3, atol=0)
    if not ok:
        bad = int(np.argmax(got != want))
        raise AssertionError(f"{name}: element {bad} is {got.reshape(-1)[bad]!r}, expected "
                             f"{want.reshape(-1)[bad]!r} (sentinel {SENTINEL} = read before "
                             "the producer wrote it)")


def check_cupy() -> None:
    n, r = ringred.size(), ringred.rank()
    s = cp.cuda.Stream(non_blocking=True)
    counts = SMALL + LARGE
    # host-to-device copies first: one from pageable memory may wait for the stream
    bases = [cp.asarray(pattern(i, c)) for i, c in enumerate(counts)]
    a = cp.random.rand(4096, 4096, dtype=cp.float32)
    iters = busy_iters(lambda: cp.tanh(a @ a), cp.cuda.Device().synchronize)
    with s:
        xs = [cp.full(c, SENTINEL if dtype_of(i).kind == "f" else -12345,
                      dtype=dtype_of(i)) for i, c in enumerate(counts)]
        for _ in range(iters):
            a = cp.tanh(a @ a)
        zero = a[0, 0] * 0
        for i, x in enumerate(xs):  # the producer: behind the busy work on s
            x[...] = (bases[i] * (r + 1) + zero).astype(x.dtype)
        handles = {}
        grouped = list(range(0, 24, 2))  # every other small tensor: one grouped call
        hg = ringred.grouped_allreduce_async([xs[i] for i in grouped], op=ringred.Sum,
                                             name="cupy.group")
        for i, x in enumerate(xs):
            if i in grouped:
                continue
            op = ringred.Sum if i % 2 else ringred.Average
            out = x if i % 3 == 0 else None
            handles[i] = (ringred.allreduce_async(x, op=op, name=f"cupy.t{i}", out=out),
                          "sum" if i % 2 else "avg", out)
        bsrc = cp.full(100_003, float(r), dtype=cp.float64) + zero
        hb = ringred.broadcast_async(bsrc, root_rank=n - 1, name="cupy.bcast")
        still_busy = not s.done
    results = {i: h.wait() for i, (h, _, _) in handles.items()}
    gres = hg.wait()
    bres = hb.wait()
    with s:  # later work on the producer stream sees the results
        doubled = {i: res * 2 for i, res in results.items()}
    s.synchronize()
    assert still_busy, (f"the producer stream finished {iters} matmuls before the last "
                        "submission: raise BUSY_S, the check proves nothing")
    for i, (_, op, out) in handles.items():
        assert isinstance(results[i], cp.ndarray), type(results[i])
        if out is not None:
            assert results[i] is out, f"cupy.t{i}: out=x did not return x"
        want = expected(i, counts[i], op, n)
        check(f"cupy.t{i} ({op}, {counts[i]} x {dtype_of(i)})", cp.asnumpy(results[i]), want)
        check(f"cupy.t{i} * 2 after wait", cp.asnumpy(doubled[i]), (want * 2).astype(want.dtype))
    for k, i in enumerate(grouped):
        check(f"cupy.group[{k}]", cp.asnumpy(gres[k]), expected(i, counts[i], "sum", n))
    assert float(bres.min()) == float(bres.max()) == n - 1, "cupy.bcast"


def check_torch() -> None:
    try:
        import torch
    except ImportError:
        print("torch not installed: torch.cuda checks skipped", flush=True)
        return
    if not torch.cuda.is_available():
        print("torch without CUDA: torch.cuda checks skipped", flush=True)
        return
    n, r = ringred.size(), ringred.rank()
    dev = torch.device("cuda", cp.cuda.Device().id)
    tdt = {np.dtype(np.float16): torch.float16, np.dtype(np.int32): torch.int32,
           np.dtype(np.float32): torch.float32}
    counts = SMALL[:24] + LARGE[:1]
    s = torch.cuda.Stream(device=dev)
    bases = [torch.from_numpy(pattern(i, c)).to(dev) for i, c in enumerate(counts)]
    a = torch.rand(4096, 4096, device=dev)
    iters = busy_iters(lambda: torch.tanh(a @ a), lambda: torch.cuda.synchronize(dev))
    with torch.cuda.stream(s):
        xs = [torch.full((c,), -12345, dtype=tdt[dtype_of(i)], device=dev)
              for i, c in enumerate(counts)]
        for _ in range(iters):
            a = torch.tanh(a @ a)
        zero = a[0, 0] * 0
        for i, x in enumerate(xs):
            x.copy_(bases[i] * (r + 1) + zero)
        hg = ringred.grouped_allreduce_async(xs[:8], op=ringred.Sum, name="torch.group")
        handles = {i: ringred.allreduce_async(xs[i], op=ringred.Average, name=f"torch.t{i}",
                                              out=xs[i]) for i in range(8, len(xs))}
        still_busy = not s.query()
    results = {i: h.wait() for i, h in handles.items()}
    gres = hg.wait()
    s.synchronize()
    assert still_busy, "the producer stream finished before the last submission"
    for i, res in results.items():
        assert res is xs[i] and res.is_cuda, f"torch.t{i}: in place"
        check(f"torch.t{i} (avg, {counts[i]} x {res.dtype})", res.cpu().numpy(),
              expected(i, counts[i], "avg", n))
    for i, res in enumerate(gres):
        assert isinstance(res, torch.Tensor) and res.is_cuda and res.dtype == xs[i].dtype
        check(f"torch.group[{i}]", res.cpu().numpy(), expected(i, counts[i], "sum", n))


def body() -> None:
    use_device()
    check_cupy()
    check_torch()
    print(f"rank {ringred.rank()}: async device collectives checked", flush=True)


if __name__ == "__main__":
    main(body)
