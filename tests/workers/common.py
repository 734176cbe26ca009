"""Helpers shared by the worker scripts (run under mpiexec)."""

from __future__ import annotations

import hashlib
import sys
import time
import traceback

import numpy as np

import ringred

_BASE = [np.uint8, np.int8, np.int16, np.int32, np.int64, np.float16, np.float32, np.float64]


def _dtype_tables() -> dict:
    """BF16, DTYPES, FLOATS, EPS: built on first use, because importing ml_dtypes costs
    ~0.6 s per rank and the workers that never touch a dtype list should not pay it."""
    try:
        import ml_dtypes

        bf16 = np.dtype(ml_dtypes.bfloat16)
    except ImportError:  # pragma: no cover
        bf16 = None
    dtypes = [np.dtype(d) for d in _BASE] + ([bf16] if bf16 is not None else [])
    floats = {np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64)} | (
        {bf16} if bf16 is not None else set())
    # relative tolerance of one rounding, times a margin for the number of ranks
    eps = {np.dtype(np.float16): 2.0**-10, np.dtype(np.float32): 2.0**-23,
           np.dtype(np.float64): 2.0**-52}
    if bf16 is not None:
        eps[bf16] = 2.0**-7
    return {"BF16": bf16, "DTYPES": dtypes, "FLOATS": floats, "EPS": eps}


def __getattr__(name: str):
    if name in ("BF16", "DTYPES", "FLOATS", "EPS"):
        if "DTYPES" not in globals():
            globals().update(_dtype_tables())
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def expect(exc_type, fn, *words):
    """Call fn; it must raise exc_type with every one of words in its message."""
    assert all(words), "an empty word matches every message"
    try:
        fn()
    except exc_type as e:
        for w in words:
            assert w in str(e), (w, str(e))
        return e
    raise AssertionError(f"{fn} did not raise {exc_type.__name__}")


def data(rank: int, dtype: np.dtype, count: int, seed: int, op: str = "sum") -> np.ndarray:
    """Rank-specific input every rank can regenerate."""
    dtypes, floats = __getattr__("DTYPES"), __getattr__("FLOATS")
    rng = np.random.default_rng([seed, rank, count, dtypes.index(dtype) if dtype in dtypes else 0])
    if dtype in floats:
        lo, hi = (0.5, 1.5) if op == "prod" else (-4.0, 4.0)
        return rng.uniform(lo, hi, count).astype(dtype)
    info = np.iinfo(dtype)
    if op == "prod":
        return rng.integers(-3 if info.min < 0 else 0, 4, count, dtype=np.int64).astype(dtype)
    return rng.integers(info.min, info.max, count, dtype=np.int64, endpoint=True).astype(dtype)


def digest(a: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(a).view(np.uint8).tobytes()).hexdigest()


def same_on_all_ranks(a: np.ndarray) -> bool:
    return len(set(ringred.allgather_object(digest(a)))) == 1


def main(body) -> None:
    """Run body(); print RANK r OK, or the traceback and exit 1 (mpiexec kills the rest).

    With RINGRED_TEST_TORCH_AS_DEVICE=1, torch CPU tensors take the device path (fake
    backend): the worker's torch checks then run through the whole GPU chain."""
    import os

    if os.environ.get("RINGRED_TEST_TORCH_AS_DEVICE") == "1":
        from ringred.testing import torch_cpu_as_device

        torch_cpu_as_device(True)
    ringred.init()
    r = ringred.rank()
    try:
        body()
    except BaseException:
        traceback.print_exc()
        sys.stdout.flush()
        sys.stderr.flush()
        from mpi4py import MPI

        # give the launcher time to forward this report: Abort tears the job down at once, and
        # a loaded machine then loses output (seen under pytest-xdist: a traceback cut short)
        time.sleep(0.5)
        MPI.COMM_WORLD.Abort(1)  # take every rank down: a failure must not become a hang
    print(f"RANK {r} OK", flush=True)
    ringred.shutdown()


def without_memory_on_last_rank(call, module, name: str, replacement, *words: str) -> None:
    """The last rank cannot allocate ``call``'s result (``module.name`` is ``replacement``
    there, which raises MemoryError): it gets that error, the others a mismatch naming it
    (and ``words``), nobody hangs, and the next call works."""
    n, r = ringred.size(), ringred.rank()
    real = getattr(module, name)
    if r == n - 1:
        setattr(module, name, replacement)
    try:
        if r == n - 1:
            expect(MemoryError, call, "injected")
        else:
            expect(ringred.MismatchError, call, *words, "rejected locally", str(n - 1))
    finally:
        setattr(module, name, real)
    call()


def no_memory(*args, **kwargs):
    """An allocator that has no memory (for without_memory_on_last_rank)."""
    raise MemoryError("no memory for the result (injected)")
