"""Errors that start on one rank (issue: never a hang, never a wrong answer).

Every case: the last rank passes something it must refuse; it raises its own error, every
other rank a MismatchError naming it ("rejected locally on rank r"), within a bounded time;
then the next collective works on every rank.  Also barrier against allreduce, and
synchronous calls from two threads (never a wrong answer).  Run with
RINGRED_TRANSPORT=shm|mpi on 2 and 3 ranks."""

from __future__ import annotations

import os
import threading
import time
import warnings

import numpy as np

import ringred

from .common import expect, main

LIMIT_S = 30.0


def check_next_call_works() -> None:
    n = ringred.size()
    x = np.arange(5, dtype=np.float64) + ringred.rank()
    got = ringred.allreduce(x, op=ringred.Sum)
    want = n * np.arange(5, dtype=np.float64) + n * (n - 1) / 2
    assert np.array_equal(got, want), (got, want)


def one_rank_refuses(label: str, good, bad, local_exc, *local_words: str) -> None:
    """The last rank calls bad(), the others good(); nobody hangs; the next call works."""
    n, r = ringred.size(), ringred.rank()
    t0 = time.monotonic()
    if r == n - 1:
        expect(local_exc, bad, *local_words)
    else:
        expect(ringred.MismatchError, good, "rejected locally", str(n - 1))
    took = time.monotonic() - t0
    assert took < LIMIT_S, (label, took)
    check_next_call_works()


def sync_cases() -> None:
    n = ringred.size()
    x = np.ones(6, np.float32)
    # broadcast: root out of range, root >= 2**31, root not an integer
    for root, exc, word in ((n, ValueError, "root rank"), (2**31, ValueError, "root rank"),
                            (0.7, TypeError, "integer"), ("0", TypeError, "integer")):
        one_rank_refuses(f"broadcast root {root!r}",
                         lambda: ringred.broadcast(x.copy(), root_rank=0),
                         lambda root=root: ringred.broadcast(x.copy(), root_rank=root), exc,
                         word)
    # allreduce: prescale None, unhashable op, bad op, a name that is no str, NUL in a name
    one_rank_refuses("prescale None", lambda: ringred.allreduce(x),
                     lambda: ringred.allreduce(x, prescale_factor=None), TypeError)
    one_rank_refuses("unhashable op", lambda: ringred.allreduce(x),
                     lambda: ringred.allreduce(x, op=[1]), TypeError)
    one_rank_refuses("bad op", lambda: ringred.allreduce(x),
                     lambda: ringred.allreduce(x, op="median"), ValueError)
    one_rank_refuses("int name", lambda: ringred.allreduce(x, name="g"),
                     lambda: ringred.allreduce(x, name=5), TypeError, "str")
    one_rank_refuses("NUL name", lambda: ringred.allreduce(x, name="g"),
                     lambda: ringred.allreduce(x, name="g\0x"), TypeError, "NUL")
    # a read-only out, an unsupported dtype, scale factors on integers
    ro = np.ones(6, np.float32)
    ro.flags.writeable = False
    one_rank_refuses("read-only out", lambda: ringred.allreduce(x, out=np.empty(6, np.float32)),
                     lambda: ringred.allreduce(x, out=ro), ValueError, "read-only")
    one_rank_refuses("bool dtype", lambda: ringred.allreduce(np.ones(3, np.int8)),
                     lambda: ringred.allreduce(np.ones(3, bool)), ringred.UnsupportedError)
    one_rank_refuses("nan prescale", lambda: ringred.allreduce(np.ones(3)),
                     lambda: ringred.allreduce(np.ones(3), prescale_factor=float("nan")),
                     ValueError, "finite")
    # allgather / reducescatter of 0-d arrays
    one_rank_refuses("allgather 0-d", lambda: ringred.allgather(np.ones(1)),
                     lambda: ringred.allgather(np.float64(1.0)), ValueError, "0-d")
    one_rank_refuses("reducescatter 0-d", lambda: ringred.reducescatter(np.ones(n)),
                     lambda: ringred.reducescatter(np.float64(1.0)), ValueError, "0-d")


def barrier_against_allreduce() -> None:
    """Rank 0 calls barrier, the others allreduce: a mismatch everywhere, no deadlock, and
    nobody runs an extra collective afterwards, so the next calls work."""
    r = ringred.rank()
    t0 = time.monotonic()
    if r == 0:
        expect(ringred.MismatchError, ringred.barrier, "barrier", "allreduce")
    else:
        expect(ringred.MismatchError, lambda: ringred.allreduce(np.ones(4)), "barrier",
               "allreduce")
    assert time.monotonic() - t0 < LIMIT_S
    check_next_call_works()
    ringred.barrier()
    check_next_call_works()
    # a shape mismatch: every rank raises, and no rank runs a follow-up the others skip
    k = 3 + (r == 0)
    expect(ringred.MismatchError, lambda: ringred.allreduce(np.ones(k)), "element count")
    ringred.barrier()
    check_next_call_works()


def async_cases() -> None:
    """A rank that rejects its own async request: the others fail that name at once with
    its reason (not after a stall), and the engine stays usable."""
    n, r = ringred.size(), ringred.rank()
    x = np.ones(5, np.float32)
    cases = [
        ("root", lambda nm: ringred.broadcast_async(x.copy(), root_rank=0, name=nm),
         lambda nm: ringred.broadcast_async(x.copy(), root_rank=n + 3, name=nm), ValueError,
         "root rank"),
        ("dtype", lambda nm: ringred.allreduce_async(x, name=nm),
         lambda nm: ringred.allreduce_async(np.ones(5, bool), name=nm),
         ringred.UnsupportedError, "bool"),
        ("scale", lambda nm: ringred.allreduce_async(np.ones(2), name=nm),
         lambda nm: ringred.allreduce_async(np.ones(2), name=nm,
                                            prescale_factor=float("inf")), ValueError, "finite"),
        ("prescale-none", lambda nm: ringred.allreduce_async(x, name=nm),
         lambda nm: ringred.allreduce_async(x, name=nm, prescale_factor=None), TypeError,
         "NoneType"),
        ("gather-0d", lambda nm: ringred.allgather_async(np.ones(2), name=nm),
         lambda nm: ringred.allgather_async(np.float64(2.0), name=nm), ValueError, "0-d"),
        ("group", lambda nm: ringred.grouped_allreduce_async([x, x], name=nm),
         lambda nm: ringred.grouped_allreduce_async([x, np.ones(2, bool)], name=nm),
         ringred.UnsupportedError, "bool"),
    ]
    for label, good, bad, exc, word in cases:
        nm = f"reject.{label}"
        t0 = time.monotonic()
        if r == n - 1:
            expect(exc, lambda bad=bad, nm=nm: bad(nm), word)
        else:
            h = good(nm)
            e = expect(ringred.MismatchError, h.wait, "rejected locally on rank", str(n - 1))
            assert word in str(e), (word, str(e))
        took = time.monotonic() - t0
        assert took < 10.0, (label, took)  # at once, not after RINGRED_STALL_CHECK_SECONDS
        got = ringred.allreduce_async(np.full(3, r, np.float64), name=f"after.{label}",
                                      op=ringred.Sum).wait()
        assert np.array_equal(got, np.full(3, n * (n - 1) / 2)), got
    # groups of different sizes: every member fails on every rank (none waits for a member
    # that some ranks never submit), then the engine goes on
    t0 = time.monotonic()
    xs = [x, x] + ([x] if r == n - 1 else [])
    e = expect(ringred.MismatchError, lambda: ringred.grouped_allreduce(xs, name="grp.sizes"),
               "grp.sizes")
    assert time.monotonic() - t0 < 10.0, str(e)
    got = ringred.grouped_allreduce([x, x], name="grp.after", op=ringred.Sum)
    assert all(np.array_equal(g, x * n) for g in got)
    # names are validated: TypeError, locally (no name to tell the others about)
    expect(TypeError, lambda: ringred.allreduce_async(x, name=7), "str")
    expect(TypeError, lambda: ringred.allreduce_async(x, name="a\0b"), "NUL")


def stall_warning_on_every_waiting_rank() -> None:
    """The last rank submits a name late: every rank that waits for it gets the StallWarning
    (RINGRED_STALL_CHECK_SECONDS=1 in this run), not only rank 0."""
    n, r = ringred.size(), ringred.rank()
    if n < 2 or os.environ.get("RINGRED_STALL_CHECK_SECONDS") != "1":
        return
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        if r == n - 1:
            time.sleep(3.0)
        got = ringred.allreduce_async(np.ones(2), name="late.one", op=ringred.Sum).wait()
    assert np.array_equal(got, np.full(2, float(n))), got
    stall = [str(w.message) for w in seen if issubclass(w.category, ringred.StallWarning)]
    if r != n - 1:
        assert any("late.one" in m and f"rank {n - 1}" in m for m in stall), (r, stall)


def threads() -> None:
    """Two threads of every rank make synchronous calls at once: every result is right or
    a MismatchError (threads paired across ranks), never a wrong number, never a hang."""
    n, r = ringred.size(), ringred.rank()
    calls, wrong, mism = 150, [], [0]

    def work(tid: int) -> None:
        for i in range(calls):
            v = float(1000 * tid + i)
            x = np.full(4, v + r, np.float64)  # same shape: a wrong pairing would go unnoticed
            try:
                got = ringred.allreduce(x, op=ringred.Sum)
            except ringred.MismatchError as e:
                assert "thread" in str(e), str(e)
                mism[0] += 1
                continue
            if not np.array_equal(got, np.full(4, n * v + n * (n - 1) / 2)):
                wrong.append((tid, i, got[:2]))

    ts = [threading.Thread(target=work, args=(t,), name=f"worker-{t}") for t in (1, 2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout=120)
        assert not t.is_alive(), "a thread hung"
    assert not wrong, wrong[:5]
    print(f"rank {r}: threads: {2 * calls - mism[0]} right, {mism[0]} mismatched", flush=True)
    check_next_call_works()


def body() -> None:
    sync_cases()
    barrier_against_allreduce()
    threads()
    async_cases()
    stall_warning_on_every_waiting_rank()
    check_next_call_works()


if __name__ == "__main__":
    main(body)
