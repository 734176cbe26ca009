"""``mpiexec -n 2 python -m ringred.bench``: allreduce table from 8 B to 64 MiB.

``--workload resnet50``: ResNet-50's 161 gradients through the background engine against
``MPI_Allreduce`` per tensor and of one concatenated buffer, plus 4 KiB async latency."""

from __future__ import annotations

import argparse
import json

import ringred

from .sweep import DEFAULT_SIZES, format_table, run_sweep


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    p = argparse.ArgumentParser(prog="python -m ringred.bench", description=__doc__)
    p.add_argument("--min-bytes", type=int, default=8)
    p.add_argument("--max-bytes", type=int, default=64 << 20)
    p.add_argument("--rounds", type=int, default=7, help="timed rounds per size (median)")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--json", help="also write the rows as JSON to this file (rank 0)")
    p.add_argument("--plot", help="write bandwidth-vs-size curves to this PNG (needs matplotlib)")
    p.add_argument("--workload", choices=("sweep", "resnet50"), default="sweep",
                   help="sweep: allreduce sizes (default); resnet50: gradient set via the engine")
    args = p.parse_args(argv)

    ringred.init()
    if args.workload == "resnet50":
        from .resnet50 import format_resnet50, run_resnet50

        res = run_resnet50(max(args.rounds, 3))
        if ringred.rank() == 0:
            print(format_resnet50(res, ringred.size()), flush=True)
            if args.json:
                with open(args.json, "w") as f:
                    json.dump({"ranks": ringred.size(), "resnet50": res}, f, indent=1)
        ringred.shutdown()
        return
    sizes = [s for s in DEFAULT_SIZES if args.min_bytes <= s <= args.max_bytes]
    rows = run_sweep(sizes, args.rounds, args.dtype)
    if ringred.rank() == 0:
        print(format_table(rows, ringred.size()), flush=True)
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"ranks": ringred.size(), "rows": rows}, f, indent=1)
        if args.plot:
            from .plot import plot_rows

            plot_rows(rows, ringred.size(), args.plot)
            print(f"wrote {args.plot}")
    ringred.shutdown()


if __name__ == "__main__":
    main()
