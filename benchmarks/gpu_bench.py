"""Allreduce of CuPy float32 arrays: ringred vs the naive path vs NCCL.

    mpiexec -n 2 python benchmarks/gpu_bench.py --json ringred.json       # ringred + naive
    mpiexec -n 2 python benchmarks/gpu_bench.py --nccl --json nccl.json   # NCCL (cupy.cuda.nccl)
    python benchmarks/gpu_bench.py --table ringred.json nccl.json          # the table

naive = CuPy -> NumPy (cupy.asnumpy), MPI_Allreduce (mpi4py), NumPy -> CuPy (cupy.asarray).
"ringred host" is ringred on the same data already in host memory (NumPy), for reference.
NCCL shares its unique id through mpi4py, like cupyx.distributed.  Every time is the median
over trials of the slowest rank's mean per call; ranks share GPU local_rank % device count.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable

SIZES = [4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20, 4 << 20, 16 << 20, 64 << 20,
         256 << 20]


def _timeit(fn: Callable[[], object], nbytes: int, comm, cp) -> float:
    from mpi4py import MPI

    reps = max(2, min(50, (32 << 20) // nbytes))
    trials = 3 if nbytes >= (16 << 20) else 5
    fn()
    fn()
    out = []
    for _ in range(trials):
        cp.cuda.Device().synchronize()
        comm.Barrier()
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        cp.cuda.Device().synchronize()
        out.append(comm.allreduce((time.perf_counter() - t0) / reps, op=MPI.MAX))
    return statistics.median(out)


def _setup():
    import cupy as cp
    from mpi4py import MPI

    import ringred

    ringred.init()
    cp.cuda.Device(ringred.local_rank() % cp.cuda.runtime.getDeviceCount()).use()
    return cp, MPI.COMM_WORLD, ringred


def run_ringred(path: str) -> None:
    """ringred on CuPy arrays, the naive path, ringred on host arrays."""
    cp, comm, ringred = _setup()
    from mpi4py import MPI

    n = comm.Get_size()
    rows = []
    for nbytes in SIZES:
        count = nbytes // 4
        x = cp.full(count, comm.Get_rank() + 1, dtype=cp.float32)
        hx = cp.asnumpy(x)
        want = n * (n + 1) / 2

        def staged(x=x):
            return ringred.allreduce(x, op=ringred.Sum)

        def naive(x=x):
            h = cp.asnumpy(x)
            comm.Allreduce(MPI.IN_PLACE, h, op=MPI.SUM)
            return cp.asarray(h)

        def host(hx=hx):
            return ringred.allreduce(hx, op=ringred.Sum)

        for f in (staged, naive):
            got = f()
            assert float(got.min()) == float(got.max()) == want, f.__name__
        rows.append({"bytes": nbytes, "ringred": _timeit(staged, nbytes, comm, cp),
                     "naive": _timeit(naive, nbytes, comm, cp),
                     "host": _timeit(host, nbytes, comm, cp)})
        if comm.Get_rank() == 0:
            r = rows[-1]
            print(f"{nbytes:>10} B  ringred {r['ringred'] * 1e3:9.3f} ms  naive "
                  f"{r['naive'] * 1e3:9.3f} ms  host {r['host'] * 1e3:9.3f} ms", flush=True)
        del x, hx
        cp.get_default_memory_pool().free_all_blocks()
    if comm.Get_rank() == 0:
        meta = {"ranks": n, "gpu": cp.cuda.runtime.getDeviceProperties(0)["name"].decode(),
                "cuda_aware": ringred.device.cuda_aware(), "rows": rows}
        with open(path, "w") as f:
            json.dump(meta, f)
    ringred.shutdown()


def run_nccl(path: str) -> None:
    """NCCL allreduce through cupy.cuda.nccl (one GPU per rank required by NCCL)."""
    cp, comm, ringred = _setup()
    res: dict = {}
    try:
        from cupy.cuda import nccl

        uid = comm.bcast(nccl.get_unique_id() if comm.Get_rank() == 0 else None)
        nc = nccl.NcclCommunicator(comm.Get_size(), uid, comm.Get_rank())
        for nbytes in SIZES:
            count = nbytes // 4
            x = cp.ones(count, dtype=cp.float32)
            y = cp.empty_like(x)

            def f(x=x, y=y, count=count):
                nc.allReduce(x.data.ptr, y.data.ptr, count, nccl.NCCL_FLOAT32, nccl.NCCL_SUM,
                             cp.cuda.get_current_stream().ptr)

            res[str(nbytes)] = _timeit(f, nbytes, comm, cp)
    except Exception as e:  # no NCCL, or NCCL refusing two ranks on one GPU
        res = {"error": f"{type(e).__name__}: {e}"}
    if comm.Get_rank() == 0:
        with open(path, "w") as f:
            json.dump(res, f)
    ringred.shutdown()


def _fmt(nbytes: int) -> str:
    for unit, shift in (("MiB", 20), ("KiB", 10)):
        if nbytes >= 1 << shift:
            return f"{nbytes >> shift} {unit}"
    return f"{nbytes} B"


def table(main_path: str, nccl_path: str | None) -> None:
    """Print the comparison table (algorithm bandwidth = bytes / time)."""
    with open(main_path) as f:
        meta = json.load(f)
    nccl: dict = {}
    if nccl_path:
        try:
            with open(nccl_path) as f:
                nccl = json.load(f)
        except OSError as e:
            nccl = {"error": str(e)}
    print(f"\nallreduce (sum) of CuPy float32, {meta['ranks']} ranks on {meta['gpu']}, "
          f"CUDA-aware MPI used: {meta['cuda_aware']}")
    print("times in ms (algbw GB/s); speedup = naive / ringred")
    head = (f"{'size':>8} | {'ringred (staged)':>18} | {'naive cupy->np->MPI':>20} | "
            f"{'speedup':>7} | {'ringred host-only':>18} | {'NCCL':>18}")
    print(head)
    print("-" * len(head))
    for r in meta["rows"]:
        b = r["bytes"]

        def cell(t, b=b):
            return f"{t * 1e3:8.3f} ({b / t / 1e9:6.2f})"

        nc = nccl.get(str(b))
        print(f"{_fmt(b):>8} | {cell(r['ringred']):>18} | {cell(r['naive']):>20} | "
              f"{r['naive'] / r['ringred']:6.2f}x | {cell(r['host']):>18} | "
              f"{cell(nc) if nc else 'n/a':>18}")
    if "error" in nccl:
        print(f"NCCL: n/a ({nccl['error'][:300]})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", help="write results here (rank 0)")
    ap.add_argument("--nccl", action="store_true", help="time NCCL instead")
    ap.add_argument("--table", nargs="+", metavar="JSON", help="print the table and exit")
    a = ap.parse_args()
    if a.table:
        table(a.table[0], a.table[1] if len(a.table) > 1 else None)
        return
    if not a.json:
        sys.exit("--json PATH is required")
    (run_nccl if a.nccl else run_ringred)(a.json)


if __name__ == "__main__":
    main()
