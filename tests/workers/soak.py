"""Soak: a random sequence of collectives (sync and async, every dtype, odd sizes), with
one-rank bad arguments and short SIGSTOPs of one rank mixed in.  Every result is checked
exactly against an integer reference and for bit-identity across ranks; every injected fault
must end with the right error on every rank and the next call must work.

All ranks draw the plan from one shared seed (RINGRED_SOAK_SEED); the data is rank-specific.
RINGRED_SOAK_STEPS runs that many steps (the same plan on every machine; the tests use it),
else RINGRED_SOAK_SECONDS bounds the run (the last step finishes).  Rank 0 ends with the
counts and the kinds of collective that ran."""

from __future__ import annotations

import os
import subprocess
import time

import numpy as np

import ringred

from .common import BF16, DTYPES, digest, expect, main

SMALL_INTS = 6  # |values| <= 6: sums and products of a few ranks stay exact in every dtype


def values(rng: np.random.Generator, dtype: np.dtype, count: int, op: str) -> np.ndarray:
    """Integer-valued data, exactly representable (and its reduction too) in ``dtype``."""
    lo = 1 if op == "prod" else -SMALL_INTS
    if dtype.kind == "u":
        lo = 0
    hi = 2 if op == "prod" else SMALL_INTS
    return rng.integers(lo, hi + 1, count).astype(np.float64)


REDUCE = {"sum": (ringred.Sum, np.sum), "min": (ringred.Min, np.min),
          "max": (ringred.Max, np.max), "prod": (ringred.Product, np.prod)}


def rank_data(seed: int, step: int, rank: int, dtype: np.dtype, count: int, op: str):
    rng = np.random.default_rng([seed, step, rank])
    return values(rng, dtype, count, op)


def check_same(a: np.ndarray, what: str) -> None:
    ds = ringred.allgather_object(digest(np.asarray(a)))
    assert len(set(ds)) == 1, (what, ds)


def sigstop_me(seconds: float) -> None:
    """Stop this process for ``seconds`` (a child sends SIGSTOP, then SIGCONT)."""
    pid = os.getpid()
    subprocess.Popen(["sh", "-c", f"sleep 0.02; kill -STOP {pid}; sleep {seconds}; "
                      f"kill -CONT {pid}"])


def one_step(seed: int, step: int, plan: np.random.Generator) -> str:
    n, r = ringred.size(), ringred.rank()
    kind = plan.choice(["allreduce", "allreduce_async", "broadcast", "broadcast_async",
                        "allgather", "allgather_async", "reducescatter", "grouped"])
    dtype = DTYPES[int(plan.integers(len(DTYPES)))]
    count = int(plan.choice([0, 1, n - 1 if n > 1 else 1, 7, 1000, 70_000, 300_001]))
    op = str(plan.choice(list(REDUCE))) if "reduce" in kind or kind == "grouped" else "sum"
    if dtype.kind in "iu" and op == "prod":
        op = "sum"
    cop, npop = REDUCE[op]
    name = f"soak.{step}"
    mine = rank_data(seed, step, r, dtype, count, op).astype(dtype)
    every = [rank_data(seed, step, k, dtype, count, op) for k in range(n)]
    if kind in ("allreduce", "allreduce_async", "grouped"):
        want = npop(np.stack(every), axis=0) if n else every[0]
        if kind == "allreduce":
            got = ringred.allreduce(mine, op=cop, name=name)
        elif kind == "allreduce_async":
            got = ringred.allreduce_async(mine, op=cop, name=name).wait()
        else:
            got = ringred.grouped_allreduce([mine, mine[: count // 2]], op=cop, name=name)
            assert np.array_equal(got[1].astype(np.float64), want[: count // 2]), kind
            got = got[0]
    elif kind in ("broadcast", "broadcast_async"):
        root = int(plan.integers(n))
        want = every[root]
        got = (ringred.broadcast(mine, root_rank=root, name=name) if kind == "broadcast"
               else ringred.broadcast_async(mine, root_rank=root, name=name).wait())
    elif kind in ("allgather", "allgather_async"):
        want = np.concatenate(every)
        got = (ringred.allgather(mine, name=name) if kind == "allgather"
               else ringred.allgather_async(mine, name=name).wait())
    else:
        rows = count - count % n if n else count
        mine, every = mine[:rows], [e[:rows] for e in every]
        total = npop(np.stack(every), axis=0)
        per = rows // n
        want = total[r * per:(r + 1) * per]
        got = ringred.reducescatter(mine, op=cop, name=name)
    assert got.dtype == dtype, (kind, got.dtype, dtype)
    assert np.array_equal(np.asarray(got).astype(np.float64), want), (kind, dtype, count, op)
    if kind not in ("reducescatter",):
        check_same(got, kind)
    return f"{kind}/{dtype}/{count}/{op}"


def bad_step(plan: np.random.Generator, step: int) -> None:
    """One rank (drawn from the plan) passes a bad argument; the others a good one."""
    n, r = ringred.size(), ringred.rank()
    if n < 2:
        return
    bad_rank = int(plan.integers(n))
    case = int(plan.integers(4))
    x = np.ones(5, np.float32)
    name = f"bad.{step}"
    calls = [
        (lambda: ringred.allreduce(x), lambda: ringred.allreduce(x, op="median"), ValueError),
        (lambda: ringred.broadcast(x, root_rank=0), lambda: ringred.broadcast(x, root_rank=n),
         ValueError),
        (lambda: ringred.allreduce_async(x, name=name).wait(),
         lambda: ringred.allreduce_async(np.ones(5, bool), name=name),
         ringred.UnsupportedError),
        (lambda: ringred.broadcast_async(x, 0, name=name).wait(),
         lambda: ringred.broadcast_async(x, 0.5, name=name), TypeError),
    ]
    good, bad, exc = calls[case]
    if r == bad_rank:
        expect(exc, bad)
    else:
        expect(ringred.MismatchError, good, "rejected locally")


def body() -> None:
    seed = int(os.environ.get("RINGRED_SOAK_SEED", "1"))
    limit = float(os.environ.get("RINGRED_SOAK_SECONDS", "20"))
    steps = int(os.environ.get("RINGRED_SOAK_STEPS", "0"))
    plan = np.random.default_rng(seed)  # the same on every rank
    t0 = time.monotonic()
    done = faults = stops = 0
    step = 0
    kinds: set[str] = set()
    while True:
        # every rank takes the same decision to go on
        go = step < steps if steps else time.monotonic() - t0 < limit
        if not ringred.broadcast_object(go, root_rank=0):
            break
        step += 1
        roll = plan.random()
        if roll < 0.1:
            bad_step(plan, step)
            faults += 1
        elif roll < 0.13 and ringred.size() > 1:
            victim = int(plan.integers(ringred.size()))
            if ringred.rank() == victim:
                sigstop_me(0.5)
            stops += 1
        kinds.add(one_step(seed, step, plan).split("/")[0])
        done += 1
    if BF16 is not None:
        assert BF16 in DTYPES
    kinds_list = ",".join(sorted(kinds))
    print(f"rank {ringred.rank()}: soak seed {seed}: {done} collectives, {faults} one-rank "
          f"faults, {stops} stops, {time.monotonic() - t0:.1f} s; kinds [{kinds_list}]",
          flush=True)


if __name__ == "__main__":
    main(body)
