"""The device correctness matrix: the IPC transport bit-compared with the staged transport
and with the host path, for the same inputs.

Both transports run in one process: two ringred contexts created with
``RINGRED_DEVICE_TRANSPORT=ipc`` and ``=staged`` (the setting is read when a communicator is
created; see tests/workers/transports.py).  The test sets ``RINGRED_IPC_MIN_BYTES=0`` so that
every size takes the IPC path, and ``RINGRED_IPC_CHUNK_BYTES`` (or not: the default).

For every dtype (u8 i8 i32 i64 f16 bf16 f32 f64) x op (sum avg min max prod) x input: random
values of 0, 1, ranks - 1 and an odd number of elements (and more than two IPC chunks when
chunks are at most 1 MiB), random *bytes* of one IPC chunk plus an odd tail (every bit
pattern: NaN, inf, subnormals; cheap to make even for the default 32 MiB chunks), and a
"specials" vector of NaN / inf / signed zeros / subnormals for the floating dtypes, the same
input goes through (1) the host path (NumPy), (2) the staged context and (3) the ipc
context.  (2) and (3) must equal (1) bit for bit, except that where (1) is a NaN from sum /
avg / prod only NaN-ness is compared (IEEE leaves those payloads to the hardware).  (1) is
also checked against a float64 / exact-integer reference for the random values up to 100k
elements.  Every mismatch is collected and reported with its dtype, op, size and first
differing element; the run fails if there is any.

Usage: python -m tests.workers.gpu_matrix [cuda|fake]   (fake: FakeDeviceArray, no GPU)
"""

from __future__ import annotations

import os
import sys

import numpy as np

import ringred

from .collectives import close, reference
from .common import BF16, data, main
from .transports import active, context_with, expect_transport

OPS = {"sum": ringred.Sum, "avg": ringred.Average, "min": ringred.Min, "max": ringred.Max,
       "prod": ringred.Product}
DTYPES = [np.dtype(d) for d in (np.uint8, np.int8, np.int32, np.int64, np.float16)]
DTYPES += [BF16] if BF16 is not None else []
DTYPES += [np.dtype(np.float32), np.dtype(np.float64)]
FLOATS = {np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64)} | (
    {BF16} if BF16 is not None else set())
UINT = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}
DEFAULT_CHUNK = 128 << 20  # RINGRED_IPC_CHUNK_BYTES when unset (csrc/core/settings.c)
MODE = sys.argv[1] if len(sys.argv) > 1 else "cuda"


class Device:
    """Moves host arrays to the device kind under test and back."""

    def __init__(self, mode: str):
        self.mode = mode
        if mode == "cuda":
            import cupy as cp

            cp.cuda.Device(ringred.local_rank() % cp.cuda.runtime.getDeviceCount()).use()
            self.cp = cp
            try:
                import torch

                self.torch = torch if torch.cuda.is_available() else None
            except ImportError:
                self.torch = None

    def supports(self, dtype: np.dtype) -> bool:
        return self.mode == "fake" or dtype != BF16 or self.torch is not None

    def to_dev(self, a: np.ndarray):
        if self.mode == "fake":
            from ringred.testing import FakeDeviceArray

            return FakeDeviceArray.from_host(a)
        if a.dtype == BF16:  # CuPy has no bfloat16: a torch.cuda tensor
            t = self.torch.from_numpy(a.view(np.int16).copy())
            return t.to(f"cuda:{self.cp.cuda.Device().id}").view(self.torch.bfloat16)
        return self.cp.asarray(a)

    def to_host(self, x, dtype: np.dtype) -> np.ndarray:
        if self.mode == "fake":
            return x.get()
        if dtype == BF16:
            return x.view(self.torch.int16).cpu().numpy().view(BF16)
        return self.cp.asnumpy(x)


def specials(dtype: np.dtype, rank: int, count: int = 64) -> np.ndarray:
    """Rank-dependent NaN, +-inf, +-0, subnormal and ordinary values (floating dtypes)."""
    finfo = np.finfo(np.float32 if dtype == BF16 else dtype)
    tiny = float(finfo.smallest_subnormal) if dtype != BF16 else 2.0**-130
    vals = [np.nan, np.inf, -np.inf, 0.0, -0.0, tiny, -tiny, 1.5, -2.25, 3.0]
    rng = np.random.default_rng([77, rank, count])
    return np.array([vals[i] for i in rng.integers(0, len(vals), count)], np.float64).astype(
        dtype)


def bits(a: np.ndarray) -> np.ndarray:
    return a.reshape(-1).view(UINT[a.dtype.itemsize])


def compare(got: np.ndarray, host: np.ndarray, opname: str) -> str | None:
    """None if equal under the matrix's rule, else where they first differ."""
    if got.shape != host.shape or got.dtype != host.dtype:
        return f"shape/dtype {got.shape} {got.dtype} vs host {host.shape} {host.dtype}"
    gb, hb = bits(got), bits(host)
    diff = gb != hb
    if host.dtype in FLOATS and opname in ("sum", "avg", "prod"):
        hn = np.isnan(host.reshape(-1).astype(np.float64))
        gn = np.isnan(got.reshape(-1).astype(np.float64))
        diff = np.where(hn, ~gn, diff)
    if not diff.any():
        return None
    i = int(np.argmax(diff))
    return (f"{int(diff.sum())} of {diff.size} differ, first [{i}]: {got.reshape(-1)[i]!r} "
            f"(0x{int(gb[i]):x}) vs host {host.reshape(-1)[i]!r} (0x{int(hb[i]):x})")


def cases(n: int, dtype: np.dtype) -> list[tuple[int, str]]:
    """(count, kind) of the inputs for one dtype x op."""
    chunk = int(os.environ.get("RINGRED_IPC_CHUNK_BYTES") or DEFAULT_CHUNK)
    counts = {0, 1, max(n - 1, 1), 7 * n + 3}
    if chunk <= 1 << 20:
        counts.add(2 * chunk // dtype.itemsize + 2 * n + 1)  # more than two chunks
    out = [(c, "random") for c in sorted(counts)]
    out.append((chunk // dtype.itemsize + 2 * n + 1, "bits"))  # one chunk and an odd tail
    if dtype in FLOATS:
        out.append((64, "specials"))
    return out


def make_input(kind: str, rank: int, dtype: np.dtype, count: int, seed: int,
               opname: str) -> np.ndarray:
    if kind == "random":
        return data(rank, dtype, count, seed, opname)
    if kind == "specials":
        return specials(dtype, rank, count)
    raw = np.random.default_rng([seed, rank]).integers(0, 256, count * dtype.itemsize,
                                                       dtype=np.uint8)
    return raw.view(dtype)


def body() -> None:
    n, r = ringred.size(), ringred.rank()
    dev = Device(MODE)
    staged, ipc = context_with("staged"), context_with("ipc")
    failures: list[str] = []
    checked = 0
    seed = 500
    for dtype in DTYPES:
        if not dev.supports(dtype):
            print(f"rank {r}: {dtype} skipped (no torch.cuda for bfloat16)", flush=True)
            continue
        for opname, op in OPS.items():
            for count, kind in cases(n, dtype):
                seed += 1
                what = f"{dtype} {opname} count={count} {kind}"
                x = make_input(kind, r, dtype, count, seed, opname)
                host = ringred.allreduce(x, op=op)
                if kind == "random" and count <= 100_000:
                    want = reference(opname, dtype, count, seed, n)
                    if not close(host, want, dtype, opname, n, count, seed):
                        failures.append(f"{what}: host path differs from the reference")
                for label, ctx in (("staged", staged), ("ipc", ipc)):
                    try:
                        with active(ctx):
                            res = ringred.allreduce(dev.to_dev(x), op=op)
                        got = dev.to_host(res, dtype)
                    except ringred.RingredError as e:
                        failures.append(f"{what}: {label} raised {type(e).__name__}: {e}")
                        continue
                    bad = compare(got, host, opname)
                    if bad:
                        failures.append(f"{what}: {label} != host: {bad}")
                checked += 1
    expect_transport(staged, "staged")
    expect_transport(ipc, "ipc")
    # (closed only on success: after a failure, main() aborts every rank instead)
    staged.close()
    ipc.close()
    everyone = ringred.allgather_object(failures)
    lines = [f"rank {q}: {f}" for q, fs in enumerate(everyone) for f in fs]
    print(f"rank {r}: {checked} cases x (host, staged, ipc) compared, "
          f"{len(failures)} mismatches here", flush=True)
    assert not lines, f"{len(lines)} mismatches:\n" + "\n".join(lines[:40])


if __name__ == "__main__":
    main(body)
