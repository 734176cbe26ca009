"""Allreduce of CuPy float32 arrays: ringred (ipc, staged) vs the naive path vs NCCL.

    mpiexec -n 2 python benchmarks/gpu_bench.py --json gpu.json            # ringred + naive
    mpiexec -n 2 python benchmarks/gpu_bench.py --nccl --json nccl.json     # NCCL
    python benchmarks/gpu_bench.py --table gpu.json nccl.json [--markdown]  # the table

Columns: ``ringred <t>`` for each device transport of ``--transports`` (default
``ipc,staged``): one ringred context per transport, created with
``RINGRED_DEVICE_TRANSPORT=<t>`` (the setting is read when a communicator is created), so
that every column comes from the same run; the transport each context actually took
(``ringred.device.transport()``) is recorded and shown.  ``--ipc-min-bytes`` (default 0)
sets ``RINGRED_IPC_MIN_BYTES`` so that the ipc column is the IPC path at every size.
``naive`` = CuPy -> NumPy (cupy.asnumpy), MPI_Allreduce (mpi4py), NumPy -> CuPy
(cupy.asarray).  ``host`` = ringred on the same data already in host memory (NumPy), for
reference.  NCCL (``--nccl``, a separate launch: NCCL refuses two ranks on one GPU, then the
column says n/a and why) shares its unique id through mpi4py, like cupyx.distributed.
Transports can also be timed in separate launches (``--transports staged`` ...): ``--table``
merges any number of JSON files; speedups are always taken within one file (same run).

Every result is checked (exact integers in float32) before it is timed; a column that gives
a wrong result or raises is reported as such and not timed.  Times: the slowest rank's mean
per call (ending with a device synchronize), median over trials; trials of the columns are
interleaved.  Ranks use GPU ``local_rank % device count``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

SIZES = [4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20, 4 << 20, 16 << 20, 64 << 20,
         256 << 20]
NAIVE, HOST = "naive", "host"


def _plan(nbytes: int) -> tuple[int, int]:
    """(calls per trial, trials): fewer at big sizes to bound the run time."""
    reps = max(2, min(50, (32 << 20) // nbytes))
    trials = 3 if nbytes >= (16 << 20) else 5
    return reps, trials


def _trial(fn: Callable[[], object], reps: int, comm, cp, ctx: Any = None) -> float:
    """The slowest rank's mean seconds per call over ``reps`` calls (``ctx``: the ringred
    context made active around the trial, untimed)."""
    from mpi4py import MPI

    from ringred import _state

    with _state.using(ctx) if ctx is not None else nullcontext():
        cp.cuda.Device().synchronize()
        comm.Barrier()
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        cp.cuda.Device().synchronize()
        dt = time.perf_counter() - t0
    return comm.allreduce(dt / reps, op=MPI.MAX)


def _setup():
    import cupy as cp
    from mpi4py import MPI

    import ringred

    ringred.init()
    cp.cuda.Device(ringred.local_rank() % cp.cuda.runtime.getDeviceCount()).use()
    return cp, MPI.COMM_WORLD, ringred


def _gpu_name(cp) -> str:
    name = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)["name"]
    return name.decode() if isinstance(name, bytes) else str(name)


def _contexts(transports: list[str]) -> dict[str, Any]:
    """One ringred context per device transport (collective: same list on every rank)."""
    from ringred import _state

    cur = _state.current()
    out = {}
    saved = os.environ.get("RINGRED_DEVICE_TRANSPORT")
    try:
        for t in transports:
            os.environ["RINGRED_DEVICE_TRANSPORT"] = t
            out[t] = _state.Context(cur.mpi_comm, cur.transport)
    finally:
        if saved is None:
            os.environ.pop("RINGRED_DEVICE_TRANSPORT", None)
        else:
            os.environ["RINGRED_DEVICE_TRANSPORT"] = saved
    return out


def _agree(comm, ok: bool, msg: str) -> str | None:
    """None if every rank is ok, else the first failing rank's message."""
    msgs = comm.allgather(None if ok else msg)
    return next((m for m in msgs if m is not None), None)


def run_ringred(path: str, transports: list[str], max_bytes: int) -> None:
    """ringred per device transport, the naive path, ringred on host arrays."""
    cp, comm, ringred = _setup()
    from mpi4py import MPI

    from ringred import _state

    n, r = comm.Get_size(), comm.Get_rank()
    ctxs = _contexts(transports)
    labels = [f"ringred {t}" for t in transports]
    columns: dict[str, dict] = {}
    dead: dict[str, str] = {}  # label -> why it is not timed any more
    rows = []
    for nbytes in [s for s in SIZES if s <= max_bytes]:
        count = nbytes // 4
        pattern = cp.arange(count, dtype=cp.float32) % 251  # exact sums in float32
        x = pattern * (r + 1)
        want = pattern * (n * (n + 1) / 2)
        y = cp.empty_like(x)
        hx = cp.asnumpy(x)
        hy = hx.copy()

        def rr(x=x, y=y):
            return ringred.allreduce(x, op=ringred.Sum, out=y)

        fns: dict[str, Callable[[], Any]] = dict.fromkeys(labels, rr)
        ctx_of = {label: ctxs[t] for t, label in zip(transports, labels, strict=True)}

        def naive(x=x):
            h = cp.asnumpy(x)
            comm.Allreduce(MPI.IN_PLACE, h, op=MPI.SUM)
            return cp.asarray(h)

        def host(hx=hx, hy=hy):
            return ringred.allreduce(hx, op=ringred.Sum, out=hy)

        fns[NAIVE], fns[HOST] = naive, host
        row: dict[str, Any] = {"bytes": nbytes, "times": {}, "errors": {}}
        live = {}
        for label, fn in fns.items():
            if label in dead:
                row["errors"][label] = dead[label]
                continue
            try:
                with _state.using(ctx_of[label]) if label in ctx_of else nullcontext():
                    got = fn()
                ok = bool(cp.array_equal(cp.asarray(got), want))
                err = "" if ok else "wrong result"
            except Exception as e:  # report the column, keep the others going
                ok, err = False, f"{type(e).__name__}: {e}"
            bad = _agree(comm, ok, f"rank {r}: {err}")
            if bad is not None:
                row["errors"][label] = bad[:300]
                if "wrong" not in bad:  # an error repeats at every size: stop trying
                    dead[label] = bad[:300]
                continue
            live[label] = fn
        for t, label in zip(transports, labels, strict=True):
            if label not in columns and label in live:
                with _state.using(ctxs[t]):
                    name, why = ringred.device.transport()
                columns[label] = {"requested": t, "transport": name, "reason": why}
        reps, trials = _plan(nbytes)
        for label, fn in live.items():  # warm-up
            _trial(fn, 1, comm, cp, ctx_of.get(label))
        samples: dict[str, list[float]] = {k: [] for k in live}
        for _ in range(trials):
            for label, fn in live.items():
                samples[label].append(_trial(fn, reps, comm, cp, ctx_of.get(label)))
        row["times"] = {k: statistics.median(v) for k, v in samples.items()}
        rows.append(row)
        if r == 0:
            cells = "  ".join(f"{k} {v * 1e3:.3f} ms" for k, v in row["times"].items())
            errs = "; ".join(f"{k}: {v}" for k, v in row["errors"].items())
            print(f"{nbytes:>10} B  {cells}" + (f"  [{errs}]" if errs else ""), flush=True)
        del x, y, want, pattern, hx, hy, fns, live, rr, naive, host
        cp.get_default_memory_pool().free_all_blocks()
    if r == 0:
        meta = {"kind": "ringred", "ranks": n, "gpu": _gpu_name(cp),
                "cuda_aware": ringred.device.cuda_aware(), "columns": columns,
                "env": {k: os.environ.get(k, "") for k in (
                    "RINGRED_IPC_MIN_BYTES", "RINGRED_IPC_CHUNK_BYTES",
                    "RINGRED_DEVICE_SEGMENT_BYTES", "RINGRED_DEVICE_SLOTS",
                    "RINGRED_CUDA_AWARE")},
                "rows": rows}
        with open(path, "w") as f:
            json.dump(meta, f, indent=1)
    for ctx in ctxs.values():
        ctx.close()
    ringred.shutdown()


def run_nccl(path: str, max_bytes: int) -> None:
    """NCCL allreduce through cupy.cuda.nccl (NCCL requires one GPU per rank)."""
    cp, comm, ringred = _setup()
    res: dict = {"kind": "nccl", "times": {}}
    try:
        from cupy.cuda import nccl

        res["version"] = str(nccl.get_version())
        uid = comm.bcast(nccl.get_unique_id() if comm.Get_rank() == 0 else None)
        nc = nccl.NcclCommunicator(comm.Get_size(), uid, comm.Get_rank())
        n = comm.Get_size()
        for nbytes in [s for s in SIZES if s <= max_bytes]:
            count = nbytes // 4
            x = cp.ones(count, dtype=cp.float32)
            y = cp.empty_like(x)

            def f(x=x, y=y, count=count):
                nc.allReduce(x.data.ptr, y.data.ptr, count, nccl.NCCL_FLOAT32, nccl.NCCL_SUM,
                             cp.cuda.get_current_stream().ptr)

            f()
            cp.cuda.Device().synchronize()
            if not bool((y == n).all()):
                raise AssertionError(f"NCCL gave a wrong sum at {nbytes} bytes")
            reps, trials = _plan(nbytes)
            res["times"][str(nbytes)] = statistics.median(
                _trial(f, reps, comm, cp) for _ in range(trials))
    except Exception as e:  # no NCCL, or NCCL refusing two ranks on one GPU
        res["error"] = f"{type(e).__name__}: {e}"
    if comm.Get_rank() == 0:
        with open(path, "w") as f:
            json.dump(res, f, indent=1)
    ringred.shutdown()


# ------------------------------------------------------------------------- the table


def _fmt(nbytes: int) -> str:
    for unit, shift in (("MiB", 20), ("KiB", 10)):
        if nbytes >= 1 << shift:
            return f"{nbytes >> shift} {unit}"
    return f"{nbytes} B"


def load(paths: list[str]) -> tuple[list[dict], dict]:
    """The ringred JSON files (in order) and the NCCL one (merged; empty if none)."""
    runs, nccl = [], {}
    for p in paths:
        try:
            with open(p) as f:
                d = json.load(f)
        except (OSError, ValueError) as e:
            print(f"(skipping {p}: {e})")
            continue
        if d.get("kind") == "nccl":
            nccl = d
        else:
            runs.append(d)
    return runs, nccl


def table(paths: list[str], markdown: bool = False) -> str:
    """The comparison table: ms per allreduce with algbw (GB/s), speedups within a run."""
    runs, nccl = load(paths)
    if not runs:
        return "no ringred results"
    cols: list[tuple[int, str]] = []  # (run index, label), labels of later runs suffixed
    for i, run in enumerate(runs):
        labels = [k for k in run["columns"]] + [NAIVE, HOST]
        for row in run["rows"]:
            labels += [k for k in row["times"] if k not in labels]
        cols += [(i, k) for k in dict.fromkeys(labels)]
    ringred_cols = [(i, k) for i, k in cols if k.startswith("ringred ")]

    def name(i: int, k: str) -> str:
        return k if len(runs) == 1 else f"{k} [run {i + 1}]"

    nccl_times = nccl.get("times", {})
    head = ["size"] + [name(i, k) for i, k in cols] + ["NCCL"]
    head += [f"{name(i, k).removeprefix('ringred ')} / naive" for i, k in ringred_cols]
    if ("ringred ipc" in {k for _, k in ringred_cols}
            and "ringred staged" in {k for _, k in ringred_cols}):
        head.append("ipc vs staged")
    if nccl_times:
        head += [f"{name(i, k).removeprefix('ringred ')} / NCCL (other run)"
                 for i, k in ringred_cols]
    by_size: dict[int, list[dict | None]] = {}
    for i, run in enumerate(runs):
        for row in run["rows"]:
            by_size.setdefault(row["bytes"], [None] * len(runs))[i] = row
    lines = []
    for b in sorted(by_size):
        rws = by_size[b]

        def t(i: int, k: str, rws=rws) -> float | None:
            row = rws[i]
            return None if row is None else row["times"].get(k)

        def cell(sec: float | None, i: int = 0, k: str = "", rws=rws, b=b) -> str:
            if sec is None:
                row = rws[i] if k else None
                err = row["errors"].get(k) if row else None
                return "error" if err and "wrong" not in err else ("WRONG" if err else "-")
            return f"{sec * 1e3:.3f} ({b / sec / 1e9:.2f})"

        def ratio(a: float | None, c: float | None) -> str:
            return f"{a / c:.2f}x" if a and c else "-"

        line = [_fmt(b)] + [cell(t(i, k), i, k) for i, k in cols]
        nc = nccl_times.get(str(b))
        line.append(cell(nc) if nc else "n/a")
        line += [ratio(t(i, NAIVE), t(i, k)) for i, k in ringred_cols]
        if len(head) > len(line) and "ipc vs staged" in head:
            ipc = [(i, k) for i, k in ringred_cols if k == "ringred ipc"][0]
            stg = [(i, k) for i, k in ringred_cols if k == "ringred staged"][0]
            same = ipc[0] == stg[0]
            line.append(ratio(t(*stg), t(*ipc)) + ("" if same else " (separate runs)"))
        if nccl_times:
            line += [ratio(nc, t(i, k)) for i, k in ringred_cols]
        lines.append(line)
    notes = []
    for i, run in enumerate(runs):
        for k, c in run["columns"].items():
            took = c["transport"]
            flag = "" if took == c["requested"] else "  <-- NOT the requested transport"
            why = f" ({c['reason']})" if c["reason"] else ""
            notes.append(f"{name(i, k)}: transport {took}{why}{flag}")
        for row in run["rows"]:
            for k, e in row["errors"].items():
                notes.append(f"{name(i, k)} at {_fmt(row['bytes'])}: {e}")
    if "error" in nccl:
        notes.append(f"NCCL: n/a ({nccl['error'][:300]})")
    elif not nccl:
        notes.append("NCCL: not run")
    first = runs[0]
    env = " ".join(f"{k}={v}" for k, v in first.get("env", {}).items() if v) or "defaults"
    title = (f"allreduce (sum) of CuPy float32, {first['ranks']} ranks on {first['gpu']}; "
             f"CUDA-aware MPI: {first['cuda_aware']}; settings: {env}")
    legend = ("times in ms per allreduce (algbw GB/s = bytes / time); <t> / naive and "
              "<t> / NCCL = that time / ringred <t>'s time (>1: ringred faster); ipc vs "
              "staged = staged time / ipc time; error/WRONG: see the notes")
    if markdown:
        out = [f"**{title}**", "", legend, "", "| " + " | ".join(head) + " |",
               "|" + "---|" * len(head)]
        out += ["| " + " | ".join(line) + " |" for line in lines]
        out += [""] + [f"- {n_}" for n_ in notes]
        return "\n".join(out)
    widths = [max(len(h), *(len(line[j]) for line in lines)) for j, h in enumerate(head)]
    out = [title, legend, " | ".join(h.rjust(w) for h, w in zip(head, widths, strict=True))]
    out.append("-" * len(out[-1]))
    out += [" | ".join(c.rjust(w) for c, w in zip(line, widths, strict=True)) for line in lines]
    return "\n".join(out + notes)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", help="write results here (rank 0)")
    ap.add_argument("--nccl", action="store_true", help="time NCCL instead")
    ap.add_argument("--transports", default="ipc,staged",
                    help="device transports to time, one ringred context each")
    ap.add_argument("--ipc-min-bytes", default="0",
                    help="RINGRED_IPC_MIN_BYTES for this run (default 0: IPC at every size); "
                         "'keep' leaves the environment's value")
    ap.add_argument("--max-bytes", type=int, default=SIZES[-1])
    ap.add_argument("--table", nargs="+", metavar="JSON", help="print the table and exit")
    ap.add_argument("--markdown", action="store_true", help="--table as a markdown table")
    a = ap.parse_args()
    if a.table:
        print(table(a.table, a.markdown))
        return
    if not a.json:
        sys.exit("--json PATH is required")
    if a.ipc_min_bytes != "keep":
        os.environ["RINGRED_IPC_MIN_BYTES"] = a.ipc_min_bytes
    if a.nccl:
        run_nccl(a.json, a.max_bytes)
    else:
        transports = [t.strip() for t in a.transports.split(",") if t.strip()]
        run_ringred(a.json, transports, a.max_bytes)


if __name__ == "__main__":
    main()
