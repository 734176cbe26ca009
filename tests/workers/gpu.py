"""Device collectives on real GPU arrays (CuPy, and torch.cuda when torch has CUDA).

Run by tests/test_gpu.py (skipped without a GPU) under mpiexec; ranks may share one GPU.
"""

from __future__ import annotations

import cupy as cp
import numpy as np

import ringred

from .collectives import close, reference
from .common import data, main, same_on_all_ranks

OPS = {"sum": ringred.Sum, "avg": ringred.Average, "max": ringred.Max}


def use_device() -> None:
    cp.cuda.Device(ringred.local_rank() % cp.cuda.runtime.getDeviceCount()).use()


def check_allreduce() -> None:
    n, r = ringred.size(), ringred.rank()
    seed = 300
    dtypes = [np.dtype(d) for d in (np.float16, np.float32, np.float64, np.int32, np.uint8)]
    for dtype in dtypes:
        for opname in OPS:
            for count in (0, 1, 7 * n + 3, 1_500_003):  # the last: several 2 MiB segments
                seed += 1
                x = data(r, dtype, count, seed, opname)
                want = reference(opname, dtype, count, seed, n)
                got = ringred.allreduce(cp.asarray(x), op=OPS[opname])
                assert isinstance(got, cp.ndarray) and got.dtype == dtype
                assert got.shape == x.shape and got.device.id == cp.cuda.Device().id
                g = got.get()
                assert close(g, want, dtype, opname, n, count, seed), (dtype, opname, count)
                assert same_on_all_ranks(g), (dtype, opname, count)
    # in place, scale factors
    x = cp.asarray(data(r, np.dtype(np.float32), 4_000_001, 9))
    want = reference("sum", np.dtype(np.float32), 4_000_001, 9, n)
    assert ringred.allreduce(x, op=ringred.Sum, out=x, postscale_factor=2.0) is x
    assert close(x.get() / 2, want, np.dtype(np.float32), "sum", n, 4_000_001, 9)


def busy(s: cp.cuda.Stream) -> cp.ndarray:
    """Queue ~tens of ms of work on s and return a 0.0 that depends on it."""
    with s:
        a = cp.random.rand(4096, 4096, dtype=cp.float32)
        for _ in range(20):
            a = cp.tanh(a @ a)
        return a[0, 0] * 0


def check_streams() -> None:
    """The copies wait for the producer stream; later work on it sees the result."""
    n, r = ringred.size(), ringred.rank()
    s = cp.cuda.Stream(non_blocking=True)
    count = 3_000_000
    with s:
        x = cp.full(count, r + 1, dtype=cp.float32)
        x += busy(s) + 1  # x becomes r + 2 only after the busy work
        y = ringred.allreduce(x, op=ringred.Sum)
        z = y * 2
    s.synchronize()
    want = sum(q + 2 for q in range(n))
    assert float(y.min()) == float(y.max()) == want, (float(y.min()), float(y.max()))
    assert float(z.min()) == float(z.max()) == 2 * want


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
    for dt in (torch.float32, torch.bfloat16, torch.int64):
        x = torch.arange(1_000_003, device=dev).to(dt) * 0 + (r + 1)
        got = ringred.allreduce(x, op=ringred.Sum)
        assert isinstance(got, torch.Tensor) and got.is_cuda and got.dtype == dt
        assert float(got.min()) == float(got.max()) == n * (n + 1) / 2, dt
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        a = torch.rand(4096, 4096, device=dev)
        for _ in range(20):
            a = torch.tanh(a @ a)
        x = torch.full((2_000_000,), float(r + 1), device=dev) + a[0, 0] * 0 + 1
        y = ringred.allreduce(x, op=ringred.Average)
        z = y * 2
    s.synchronize()
    want = sum(q + 2 for q in range(n)) / n
    assert abs(float(y.min()) - want) < 1e-5 and abs(float(y.max()) - want) < 1e-5
    assert abs(float(z.max()) - 2 * want) < 1e-5


def check_others() -> None:
    n, r = ringred.size(), ringred.rank()
    for root in range(n):
        x = cp.asarray(data(r, np.dtype(np.float64), 1_000_001, 3))
        got = ringred.broadcast(x, root_rank=root)
        assert isinstance(got, cp.ndarray)
        assert np.array_equal(got.get(), data(root, np.dtype(np.float64), 1_000_001, 3))
    x = cp.full((1000 * (r + 1), 64), r, dtype=cp.float32)
    got = ringred.allgather(x)
    want = np.concatenate([np.full((1000 * (q + 1), 64), q, np.float32) for q in range(n)])
    assert isinstance(got, cp.ndarray) and np.array_equal(got.get(), want)
    x = cp.ones((1000 * n + 1, 32), dtype=cp.float32) * (r + 1)
    got = ringred.reducescatter(x, op=ringred.Sum)
    rows = (1000 * n + 1) // n + (1 if r < (1000 * n + 1) % n else 0)
    assert got.shape == (rows, 32) and float(got.min()) == float(got.max()) == n * (n + 1) / 2
    # a mismatch raises on every rank and leaves ringred usable
    try:
        ringred.allreduce(cp.ones(10_000 + r, dtype=cp.float32))
    except ringred.MismatchError as e:
        assert "element count" in str(e)
    else:
        raise AssertionError("no MismatchError")
    got = ringred.allreduce(cp.ones(10, dtype=cp.float32), op=ringred.Sum)
    assert float(got.sum()) == 10 * n


def body() -> None:
    use_device()
    ok, why = ringred.device.backend_available("cuda")
    assert ok, why
    print(f"rank {ringred.rank()}: device {cp.cuda.Device().id}, cuda-aware MPI: "
          f"{ringred.device.cuda_aware()}", flush=True)
    check_allreduce()
    check_streams()
    check_torch()
    check_others()


if __name__ == "__main__":
    main(body)
