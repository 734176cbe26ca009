"""Device requests through the background engine, on the fake device backend.

FakeDeviceArray inputs (and torch CPU tensors sent through the device path) are submitted
with the asynchronous API; the engine packs them into its device fusion buffer on its own
(fake) stream, stages the fused buffer through the host transport, unpacks, and completes a
request only after its done event.  The fake streams run every copy after a random delay and
poison what they overwrite, so an ordering bug shows up as a wrong result.

Usage: python -m tests.workers.engine_device [main|join|ordering|producer]
"""

from __future__ import annotations

import os
import sys

import numpy as np
import torch

import ringred
from ringred.testing import FakeDeviceArray, torch_cpu_as_device

from .cases import ENV as CASES_ENV
from .cases import run_cases
from .collectives import close, reference
from .common import BF16, data, digest, expect, main, same_on_all_ranks

OPS = {"sum": ringred.Sum, "avg": ringred.Average, "min": ringred.Min, "max": ringred.Max,
       "prod": ringred.Product}
DTYPES = [np.dtype(d) for d in (np.uint8, np.int32, np.int64, np.float16, np.float32,
                                np.float64)] + ([BF16] if BF16 is not None else [])


def dev(a: np.ndarray) -> FakeDeviceArray:
    return FakeDeviceArray.from_host(a)


def sizes(n: int) -> list[int]:
    # 0, 1, fewer than the ranks, not divisible by them, several staging segments when fused
    return sorted({0, 1, max(n - 1, 1), 7 * n + 3, 70_001})


def shuffled(items: list, seed: int) -> list:
    order = np.random.default_rng([seed, ringred.rank()]).permutation(len(items))
    return [items[i] for i in order]


def check_matrix(seed: int = 1) -> None:
    """Every dtype x op x size, submitted in a different order on every rank, fused."""
    n, r = ringred.size(), ringred.rank()
    cases = []
    for dtype in DTYPES:
        for opname in OPS:
            for count in sizes(n):
                seed += 1
                cases.append((f"m.{dtype}.{opname}.{count}", dtype, opname, count, seed))
    handles = {}
    for name, dtype, opname, count, s in shuffled(cases, seed):
        x = dev(data(r, dtype, count, s, opname))
        handles[name] = (ringred.allreduce_async(x, op=OPS[opname], name=name), x)
    for name, dtype, opname, count, s in cases:
        got = handles[name][0].wait()
        assert isinstance(got, FakeDeviceArray) and got.dtype == dtype, (name, type(got))
        g = got.get()
        want = reference(opname, dtype, count, s, n)
        assert close(g, want, dtype, opname, n, count, s), name
        assert same_on_all_ranks(g), name


def check_bitwise_like_host(seed: int = 500) -> None:
    """The device path gives the host path's bits for the same inputs (same transport)."""
    n, r = ringred.size(), ringred.rank()
    for dtype in (np.dtype(np.float16), np.dtype(np.float32), BF16 or np.dtype(np.float64)):
        xs = [data(r, dtype, c, seed + c, "sum") for c in (3, 1000, 33_333)]
        host = [ringred.allreduce_async(x, name=f"bw.h.{dtype}.{i}") for i, x in enumerate(xs)]
        devs = [ringred.allreduce_async(dev(x), name=f"bw.d.{dtype}.{i}")
                for i, x in enumerate(xs)]
        for h, d in zip(host, devs, strict=True):
            assert digest(h.wait()) == digest(d.wait().get()), dtype
    assert n >= 1


def check_variants() -> None:
    """In place, a given out, scale factors, non-contiguous input, multi-dimensional."""
    n, r = ringred.size(), ringred.rank()
    x = data(r, np.dtype(np.float64), 5003, 7)
    want = reference("sum", np.dtype(np.float64), 5003, 7, n)
    d = dev(x)
    assert ringred.allreduce_async(d, op=ringred.Sum, name="v.inplace", out=d).wait() is d
    assert np.allclose(d.get(), want)
    out = FakeDeviceArray.empty(5003, np.float64)
    res = ringred.allreduce_async(dev(x), op=ringred.Sum, name="v.out", out=out).wait()
    assert res is out and np.allclose(out.get(), want)
    res = ringred.allreduce_async(dev(x), op=ringred.Sum, name="v.scale", prescale_factor=0.5,
                                  postscale_factor=3.0).wait()
    assert np.allclose(res.get(), want * 1.5)
    big = FakeDeviceArray(data(r, np.dtype(np.float64), 2006, 8).reshape(1003, 2))[:, 1]
    wantbig = reference("sum", np.dtype(np.float64), 2006, 8, n).reshape(1003, 2)[:, 1]
    res = ringred.allreduce_async(big, op=ringred.Sum, name="v.strided").wait()
    assert np.allclose(res.get(), wantbig)
    m = np.arange(24, dtype=np.float32).reshape(2, 3, 4) * (r + 1)
    res = ringred.allreduce_async(dev(m), op=ringred.Sum, name="v.3d").wait()
    assert res.shape == (2, 3, 4) and np.array_equal(res.get(), m / (r + 1) * n * (n + 1) / 2)


def check_grouped() -> None:
    """A synchronous grouped allreduce of many small device tensors (one fused unit)."""
    n, r = ringred.size(), ringred.rank()
    xs = [dev(np.full(3 + i % 7, float(r + i), np.float32)) for i in range(200)]
    xs.append(dev(np.full(4, r, np.int64)))
    got = ringred.grouped_allreduce(xs, op=ringred.Sum, name="g.many")
    for i, g in enumerate(got[:-1]):
        assert np.all(g.get() == sum(q + i for q in range(n))), i
    assert got[-1].dtype == np.int64 and np.all(got[-1].get() == n * (n - 1) // 2)


def check_other_collectives() -> None:
    n, r = ringred.size(), ringred.rank()
    for root in range(n):
        x = dev(data(r, np.dtype(np.float32), 3001, 3))
        got = ringred.broadcast_async(x, root, name=f"o.bcast.{root}").wait()
        assert np.array_equal(got.get(), data(root, np.dtype(np.float32), 3001, 3)), root
        d = dev(data(r, np.dtype(np.int32), 17, 4))
        assert ringred.broadcast_async(d, root, name=f"o.bcast_.{root}", out=d).wait() is d
        assert np.array_equal(d.get(), data(root, np.dtype(np.int32), 17, 4))
    rows = 0 if r == 0 else r + 300
    x = dev(np.full((rows, 5), r, np.float64))
    got = ringred.allgather_async(x, name="o.gather").wait()
    want = np.concatenate([np.full((0 if q == 0 else q + 300, 5), q, np.float64)
                           for q in range(n)])
    assert isinstance(got, FakeDeviceArray) and np.array_equal(got.get(), want)
    for nrows in (1, n, 3 * n + 1, 1000):
        x = data(r, np.dtype(np.float64), nrows * 3, 11).reshape(nrows, 3)
        want = reference("avg", np.dtype(np.float64), nrows * 3, 11, n).reshape(nrows, 3)
        split = [nrows // n + (1 if q < nrows % n else 0) for q in range(n)]
        lo = sum(split[:r])
        got = ringred.reducescatter_async(dev(x), name=f"o.rs.{nrows}").wait()
        assert got.shape == (split[r], 3) and np.allclose(got.get(), want[lo:lo + split[r]])


def check_torch_as_device() -> None:
    """torch CPU tensors through the device path: results are torch tensors again."""
    n, r = ringred.size(), ringred.rank()
    torch_cpu_as_device(True)
    try:
        ts = [torch.full((s,), float(r + 1), dtype=dt)
              for s, dt in ((1, torch.float32), (4097, torch.bfloat16), (9, torch.int64))]
        hs = [ringred.allreduce_async(t, op=ringred.Sum, name=f"t.{i}") for i, t in enumerate(ts)]
        for h, t in zip(hs, ts, strict=True):
            got = h.wait()
            assert isinstance(got, torch.Tensor) and got.dtype == t.dtype
            assert float(got.min()) == float(got.max()) == n * (n + 1) / 2
        g = torch.arange(1000, dtype=torch.float64) * (r + 1)
        ringred.allreduce_async(g, name="t.inplace", out=g).wait()
        assert torch.allclose(g, torch.arange(1000, dtype=torch.float64) * (n + 1) / 2)
    finally:
        torch_cpu_as_device(False)


def check_mismatches() -> None:
    """Host on one rank and device on another, or different shapes: MismatchError on every
    rank, naming the ranks; the engine stays usable."""
    n, r = ringred.size(), ringred.rank()
    if n > 1:
        x = np.ones(300, np.float32)
        e = expect(ringred.MismatchError,
                   ringred.allreduce_async(x if r == 0 else dev(x), name="mm.where").wait,
                   "host and GPU", "rank 0 sent a host tensor")
        assert "GPU tensor" in str(e), str(e)
        expect(ringred.MismatchError,
               ringred.allreduce_async(dev(np.ones(100 + r, np.float32)), name="mm.shape").wait,
               "shape")
    got = ringred.allreduce_async(dev(np.full(10, r, np.float64)), op=ringred.Sum,
                                  name="mm.after").wait()
    assert np.all(got.get() == n * (n - 1) / 2)


def body_main() -> None:
    check_matrix()
    check_bitwise_like_host()
    check_variants()
    check_grouped()
    check_other_collectives()
    check_torch_as_device()
    check_mismatches()


def body_join() -> None:
    """Uneven batch counts with device tensors: joined ranks contribute zeros.  Rank 0 joins
    at once, before the engine ever saw a device tensor of its own."""
    n, r = ringred.size(), ringred.rank()
    batches = 0 if r == 0 else 2 + 2 * r
    for b in range(batches):
        present = [q for q in range(1, n) if b < 2 + 2 * q]
        x = dev(np.full(100, float(r + 1), np.float32))
        got = ringred.allreduce_async(x, name=f"j.w.{b}").wait()
        assert np.allclose(got.get(), sum(q + 1 for q in present) / n), b
        big = dev(np.full(70_000, float(r + 1), np.float64))
        got = ringred.allreduce_async(big, op=ringred.Sum, name=f"j.big.{b}").wait()
        assert np.allclose(got.get(), sum(q + 1 for q in present))
        ints = dev(np.full(5, 4 * (r + 1), np.int32))
        g = ringred.grouped_allreduce([ints, x], name=f"j.grp.{b}")
        assert (g[0].get() == sum(4 * (q + 1) for q in present) // n).all()
        rs = ringred.reducescatter_async(dev(np.ones((2 * n, 3))), op=ringred.Sum,
                                         name=f"j.rs.{b}").wait()
        assert np.all(rs.get() == len(present))
    last = ringred.join()
    assert last == (n - 1 if n > 1 else 0), last
    got = ringred.allreduce_async(dev(np.ones(3)), op=ringred.Sum, name="j.after").wait()
    assert (got.get() == n).all()


def body_ordering() -> None:
    """Inputs written by their producer stream 50 ms after submission, results read as soon
    as wait() returns.  Run with RINGRED_TEST_PLANT=no_ready_wait (the engine does not wait
    for the producer) or early_done (requests complete before the device is done), it must
    fail, deterministically.  RINGRED_TEST_ORDERING_ROUNDS (3) repeats it: on a loaded
    machine a round of early_done can finish its copies before the results are read."""
    from ringred.testing import FakeStream

    n, r = ringred.size(), ringred.rank()
    for rnd in range(int(os.environ.get("RINGRED_TEST_ORDERING_ROUNDS", "3"))):
        s = FakeStream()
        xs = []
        for i in range(48):
            x = FakeDeviceArray.from_host(np.zeros(1 + 97 * i, np.float32), stream=s)
            xs.append(x)
        s.sleep(0.05)
        for i, x in enumerate(xs):
            s.copy(x, np.full(x.shape, float(r + 1 + i), np.float32))
        hs = [ringred.allreduce_async(x, op=ringred.Sum, name=f"ord.{rnd}.{i}")
              for i, x in enumerate(xs)]
        for i, h in enumerate(hs):
            got = h.wait().get()
            want = sum(q + 1 + i for q in range(n))
            assert np.all(got == want), f"wrong result for ord.{rnd}.{i}: {got[:4]} != {want}"
        s.close()


MODES = {"main": body_main, "join": body_join, "ordering": body_ordering}

if __name__ == "__main__":
    if CASES_ENV in os.environ:  # many modes in one run, each a case (tests/workers/cases.py)
        run_cases(MODES)
    else:
        main(MODES[sys.argv[1] if len(sys.argv) > 1 else "main"])
