"""Bad input: a clear error on every rank, nothing corrupted, the library still usable."""

from __future__ import annotations

import os

import numpy as np

import ringred

from .cases import ENV as CASES_ENV
from .cases import run_cases
from .common import expect, main, no_memory, without_memory_on_last_rank


def still_works():
    n = ringred.size()
    got = ringred.allreduce(np.arange(5, dtype=np.float64), op=ringred.Sum)
    assert np.array_equal(got, np.arange(5) * n)


def check_mismatches() -> None:
    """Ranks disagree: every rank gets MismatchError, buffers stay intact, nobody hangs."""
    n, r = ringred.size(), ringred.rank()
    odd = r == n - 1 and n > 1

    # mismatched element count, with shapes named
    x = np.ones(10 + (1 if odd else 0), np.float32)
    before = x.copy()
    if n > 1:
        expect(ringred.MismatchError, lambda: ringred.allreduce(x, name="grad.w", out=x),
               "grad.w", "element count", "10", "11", "rank")
        assert np.array_equal(x, before), "input corrupted by a failed call"
        # large message (ring path) mismatch leaves buffers intact too
        big = np.ones(100_000 + (1 if odd else 0))
        expect(ringred.MismatchError, lambda: ringred.allreduce(big, out=big), "element count")
        assert (big == 1).all()
        still_works()
        # dtype
        y = np.ones(4, np.float64 if odd else np.float32)
        expect(ringred.MismatchError, lambda: ringred.allreduce(y), "data type", "float32")
        # op
        expect(ringred.MismatchError,
               lambda: ringred.allreduce(np.ones(4), op=ringred.Max if odd else ringred.Sum),
               "reduce op", "max", "sum")
        # scale factors
        expect(ringred.MismatchError,
               lambda: ringred.allreduce(np.ones(4), prescale_factor=2.0 if odd else 1.0),
               "prescale")
        # broadcast root
        expect(ringred.MismatchError,
               lambda: ringred.broadcast(np.ones(3), root_rank=1 if odd else 0), "root rank")
        # allgather trailing dimension
        expect(ringred.MismatchError,
               lambda: ringred.allgather(np.ones((2, 3 if odd else 4))), "allgather",
               "element count", "4 on rank", f"3 on rank {n - 1}")
        # one rank refuses its input locally: it gets the precise error, the others a
        # mismatch naming it, and nobody hangs
        bad = np.ones(4, dtype=bool) if odd else np.ones(4)
        if odd:
            expect(ringred.UnsupportedError, lambda: ringred.allreduce(bad), "bool")
        else:
            expect(ringred.MismatchError, lambda: ringred.allreduce(bad), "rejected locally",
                   str(n - 1))
        ro = np.ones(4)
        ro.flags.writeable = False
        if odd:
            expect(ValueError, lambda: ringred.allreduce(np.ones(4), out=ro), "read-only")
        else:
            expect(ringred.MismatchError,
                   lambda: ringred.allreduce(np.ones(4), out=np.empty(4)), "rejected locally")
        still_works()


def check_bad_input() -> None:
    """The same bad input everywhere: the same error everywhere."""
    n = ringred.size()
    expect(ringred.UnsupportedError, lambda: ringred.allreduce(np.ones(3, dtype=bool)), "bool")
    expect(ringred.UnsupportedError, lambda: ringred.allreduce(np.ones(3, dtype=np.complex64)),
           "unsupported data type complex64")
    expect(ValueError, lambda: ringred.broadcast(np.ones(3), root_rank=n), "root rank")
    expect(ValueError, lambda: ringred.allgather(np.float64(3.0)), "0-d")
    # integer scaling works as in Horovod (float64, truncated): trunc(3 * 2.5) = 7 per rank
    assert ringred.allreduce(np.full(3, 3, np.int32), op=ringred.Sum,
                             prescale_factor=2.5).tolist() == [7 * n] * 3
    expect(ValueError, lambda: ringred.allreduce(np.ones(3), prescale_factor=float("nan")),
           "finite")
    ro = np.ones(4)
    ro.flags.writeable = False
    expect(ValueError, lambda: ringred.allreduce(np.ones(4), out=ro), "read-only")
    expect(ValueError, lambda: ringred.allreduce(np.ones(4), out=np.ones(5)), "shape")
    expect(TypeError, lambda: ringred.allreduce(object()), "cannot use")
    still_works()
    # read-only *input* is fine for an out-of-place call
    ro_in = np.arange(3.0)
    ro_in.flags.writeable = False
    assert np.array_equal(ringred.allreduce(ro_in, op=ringred.Sum), np.arange(3.0) * n)


def check_partly_overlapping_out(n: int, r: int) -> None:
    """An ``out`` that partly overlaps the input: the result is as if they were separate
    (NumPy's rule; the C core reduces from a copy of the input), on the one-sync path and
    the chunked one, sync and async, ordinary and shared arrays, and from C."""
    offset = n * (n - 1) / 2  # sum over ranks of r
    for count in (5, 300_000):
        for make in (np.empty, ringred.empty):
            for shift in (3, -3):
                for run in ("sync", "async"):
                    buf = make(count + 3, np.float64)
                    buf[:] = np.arange(count + 3) + r
                    x, out = (buf[:count], buf[3:]) if shift > 0 else (buf[3:], buf[:count])
                    want = n * (np.arange(count) + (0 if shift > 0 else 3)) + offset
                    if run == "sync":
                        got = ringred.allreduce(x, op=ringred.Sum, out=out)
                    else:
                        got = ringred.allreduce_async(x, op=ringred.Sum, out=out).wait()
                    assert got is out
                    assert np.array_equal(out, want), (count, make, shift, run)
    from ringred._lib import ffi, lib
    from ringred._state import current

    a = np.arange(8.0) + r
    st = lib.rr_allreduce(current().handle, ffi.from_buffer(a), ffi.from_buffer(a[1:]), 4,
                          lib.RR_FLOAT64, lib.RR_SUM, 1.0, 1.0, 1)
    assert st == lib.RR_OK, st
    assert np.array_equal(a[1:5], n * np.arange(4.0) + offset), a
    still_works()



class _BigFails:
    """NumPy as a ringred module sees it, except that np.empty of 1000 elements or more
    raises MemoryError (the result of a collective; the small bookkeeping arrays work)."""

    def __getattr__(self, k):
        return getattr(np, k)

    @staticmethod
    def empty(shape, *args, **kwargs):
        if int(np.prod(shape)) >= 1000:
            no_memory()
        return np.empty(shape, *args, **kwargs)


def check_no_memory_for_results(n: int, r: int) -> None:
    """The last rank cannot allocate a collective's result: it gets the MemoryError, the
    others an error naming it, nobody hangs, and the next call works."""
    import sys

    import ringred.collectives as coll

    a2a = sys.modules["ringred.alltoall"]  # the module; ringred.alltoall is the function

    calls = [
        (coll, "allgather", lambda: ringred.allgather(np.ones((300, 4)))),
        (coll, "reducescatter", lambda: ringred.reducescatter(np.ones((3000 * n, 2)))),
        (a2a, "alltoall", lambda: ringred.alltoall(np.ones((1000 * n, 2)))),
    ]
    for module, what, call in calls:
        without_memory_on_last_rank(call, module, "np", _BigFails(), what)
    still_works()


def check_alltoall_bad_splits(n: int, r: int) -> None:
    """Splits that do not add up on one rank: ValueError there, an error naming it on the
    others (it used to hang them in the exchange)."""
    x = np.ones((2 * n, 2))
    splits = [1] * n if r == n - 1 else [2] * n
    if r == n - 1:
        expect(ValueError, lambda: ringred.alltoall(x, splits=splits), "splits")
    else:
        expect(ringred.MismatchError, lambda: ringred.alltoall(x, splits=splits),
               "rejected locally", str(n - 1), "splits")
    out, got = ringred.alltoall(x)
    assert out.shape == (2 * n, 2) and list(got) == [2] * n



def check_unpicklable_objects(n: int, r: int) -> None:
    """An object one rank cannot pickle: that rank gets pickle's error, the others an error
    naming it, for broadcast_object (from the root) and allgather_object; nobody hangs."""
    bad = lambda: None  # noqa: E731 - lambdas cannot be pickled
    root = n - 1
    if r == root:
        expect(Exception, lambda: ringred.broadcast_object(bad, root_rank=root), "lambda")
    else:
        expect(ringred.RingredError,
               lambda: ringred.broadcast_object(None, root_rank=root), "could not pickle",
               str(root))
    mine = bad if r == n - 1 else r
    if r == n - 1:
        expect(Exception, lambda: ringred.allgather_object(mine), "lambda")
    else:
        expect(ringred.RingredError, lambda: ringred.allgather_object(mine), "could not pickle",
               str(n - 1))
    assert ringred.allgather_object(r) == list(range(n))
    assert ringred.broadcast_object("ok", root_rank=root) == "ok"


def _each_rank(check):
    def run() -> None:
        n, r = ringred.size(), ringred.rank()
        if n > 1 or check is check_partly_overlapping_out:
            check(n, r)
        ringred.barrier()
    return run


CHECKS = {
    "mismatches": check_mismatches,
    "bad-input": check_bad_input,
    "overlapping-out": _each_rank(check_partly_overlapping_out),
    "no-memory": _each_rank(check_no_memory_for_results),
    "alltoall-splits": _each_rank(check_alltoall_bad_splits),
    "unpicklable": _each_rank(check_unpicklable_objects),
}


def body() -> None:
    for check in CHECKS.values():
        check()



if __name__ == "__main__":
    if CASES_ENV in os.environ:
        run_cases(CHECKS)
    else:
        main(body)
