"""Result arrays of allreduces without ``out=`` come from a pool (ringred/_pool.py): they
must be bit-identical to in-place results, and an array (or a view of it, or a tensor over
it) the caller still holds must never be written by a later call.  Also the torch fast path
(CPU tensors straight to the engine) and the engine's phase counters.

Modes (argv[1]): numpy (default), torch.
"""

from __future__ import annotations

import sys

import numpy as np

import ringred

from .common import data, main

SIZES = [3, 20_000, 70_000, 300_000]  # below and above the pool's 64 KiB (float32/float64)
OPS = {"sum": ringred.Sum, "avg": ringred.Average, "max": ringred.Max}


def step_inputs(step: int) -> dict[str, np.ndarray]:
    r = ringred.rank()
    out = {}
    for dt in (np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.int32)):
        for size in SIZES:
            out[f"{dt}/{size}"] = data(r, dt, size, 1000 * step + size)
    return out


def body_numpy() -> None:
    eng = ringred._state.current().get_engine()
    held: list[tuple[np.ndarray, np.ndarray]] = []  # (result or view, its expected value)
    reused0 = eng.results.reused
    p0 = eng.phases()
    submitted = 0
    for step in range(6):
        xs = step_inputs(step)
        op = list(OPS)[step % len(OPS)]
        hs = {nm: ringred.allreduce_async(x, op=OPS[op], name=f"pool/{nm}") for nm, x in
              xs.items()}
        copies = {nm: x.copy() for nm, x in xs.items()}
        hin = {nm: ringred.allreduce_async(c, op=OPS[op], name=f"inplace/{nm}", out=c)
               for nm, c in copies.items()}
        submitted += 2 * len(xs)
        res = {nm: h.wait() for nm, h in hs.items()}
        for nm, h in hin.items():
            assert h.wait() is copies[nm]
            got = res[nm]
            assert type(got) is np.ndarray and got.dtype == xs[nm].dtype, nm
            assert got.shape == xs[nm].shape and got.flags.c_contiguous, nm
            # bit-identical to the in-place reduction of the same inputs
            assert got.tobytes() == copies[nm].tobytes(), (step, nm)
            assert not np.shares_memory(got, xs[nm]), nm
        # nothing still held (whole arrays and views) was handed out again or written
        for old, want in held:
            for nm, got in res.items():
                assert not np.shares_memory(old, got), (step, nm)
            assert old.tobytes() == want.tobytes(), step
        # keep some results whole, a view of some, drop the rest (free for reuse)
        keep = [nm for i, nm in enumerate(res) if i % 3 == step % 3]
        for i, nm in enumerate(keep):
            kept = res[nm] if i % 2 else res[nm][1:]
            held.append((kept, kept.copy()))
        del res, hs
    if eng.results.limit > 1:
        assert eng.results.reused > reused0, "dropped results were never reused"
    else:  # RINGRED_RESULT_POOL_BYTES=1: nothing fits, every result is a fresh array
        assert eng.results.reused == reused0
    p1 = eng.phases()
    n_red = (p1["fused"] - p0["fused"]) + (p1["direct"] - p0["direct"])
    assert n_red == submitted, (n_red, submitted)
    for k in ("negotiate_s", "copy_in_s", "reduce_s", "copy_out_s", "wait_s"):
        assert p1[k] >= p0[k] >= 0, k
    assert p1["units"] > p0["units"] and p1["direct_bytes"] > p0["direct_bytes"]


def body_torch() -> None:
    import torch

    import ringred.torch as hvd

    n, r = ringred.size(), ringred.rank()
    held: list[tuple[torch.Tensor, torch.Tensor]] = []
    for step in range(4):
        base = torch.from_numpy(data(r, np.dtype(np.float32), 70_000, step))
        # in place, fast path: the handle returns the tensor itself
        t = base.clone()
        got = hvd.synchronize(hvd.allreduce_async_(t, name="t.inplace", op=hvd.Sum))
        assert got is t
        # a new tensor (pooled): bit-identical to in place
        new = hvd.synchronize(hvd.allreduce_async(base, name="t.new", op=hvd.Sum))
        assert isinstance(new, torch.Tensor) and torch.equal(new, t)
        assert new.data_ptr() != base.data_ptr()
        for old, want in held:
            assert torch.equal(old, want) and old.data_ptr() != new.data_ptr(), step
        if step % 2:
            held.append((new, new.clone()))
        # a parameter that requires grad, averaged in place
        p = torch.nn.Parameter(base.clone())
        assert hvd.synchronize(hvd.allreduce_async_(p, name="t.param")) is p
        assert torch.equal(p.detach(), t / n) or torch.allclose(p.detach(), t / n)
        # the general path: non-contiguous, bfloat16, scale factors
        nc = base.clone().reshape(100, 700).t()
        want = t.reshape(100, 700).t()
        assert hvd.synchronize(hvd.allreduce_async_(nc, name="t.nc", op=hvd.Sum)) is nc
        assert torch.equal(nc, want)
        bf = torch.full((1000,), float(r + 1), dtype=torch.bfloat16)
        hvd.synchronize(hvd.allreduce_async_(bf, name="t.bf16", op=hvd.Sum))
        assert float(bf[0]) == n * (n + 1) / 2
        sc = base.clone()
        hvd.synchronize(hvd.allreduce_async_(sc, name="t.scaled", op=hvd.Sum,
                                             postscale_factor=0.5))
        assert torch.allclose(sc, t * 0.5)
        # out= another tensor through the numpy API
        o = torch.empty_like(base)
        assert ringred.allreduce_async(base, op=ringred.Sum, name="t.out", out=o).wait() is o
        assert torch.equal(o, t)


MODES = {"numpy": body_numpy, "torch": body_torch}

if __name__ == "__main__":
    main(MODES[sys.argv[1] if len(sys.argv) > 1 else "numpy"])
