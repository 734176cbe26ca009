"""``mpiexec -n 2 python -m ringred.bench``: allreduce table from 8 B to 64 MiB.

``--workload resnet50``: ResNet-50's 161 gradients through the background engine against
``MPI_Allreduce`` per tensor and of one concatenated buffer, plus 4 KiB async latency;
``--workload train``: a PyTorch training step with DistributedOptimizer against mpi4py;
``--workload ddp``: DDP on the "ringred" torch.distributed backend against gloo.
``--device cuda`` runs resnet50 / train on torch.cuda tensors (against the naive
device -> NumPy -> MPI_Allreduce -> device path); ``--device fake`` runs CPU tensors through
ringred's device path on the fake backend (CI smoke test)."""

from __future__ import annotations

import argparse
import json

import ringred

from .sweep import DEFAULT_SIZES, contexts_for, format_table, run_sweep


def _report(text: str, res: object, path: str | None) -> None:
    """Rank 0 prints ``text`` (and writes ``res`` to ``path`` as JSON); then shut down."""
    if ringred.rank() == 0:
        print(text, flush=True)
        if path:
            with open(path, "w") as f:
                json.dump(res, f, indent=1)
    ringred.shutdown()


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    p = argparse.ArgumentParser(prog="python -m ringred.bench", description=__doc__)
    p.add_argument("--workload", choices=["sweep", "resnet50", "train", "ddp"], default="sweep",
                   help="sweep: allreduce sizes (default); resnet50: gradient set through the "
                        "engine; train: DistributedOptimizer training step vs mpi4py")
    p.add_argument("--steps", type=int, default=5, help="train: steps per timed round")
    p.add_argument("--batch", type=int, default=32, help="train: mini-batch per rank")
    p.add_argument("--width", type=int, default=1536, help="train: hidden width of the MLP")
    p.add_argument("--device", choices=["cpu", "cuda", "fake"], default="cpu",
                   help="resnet50/train: where the tensors live (cuda: torch.cuda tensors; "
                        "fake: CPU tensors through the fake device backend)")
    p.add_argument("--shrink", type=int, default=1,
                   help="resnet50: divide every gradient's size by this (smoke tests)")
    p.add_argument("--only", default=None,
                   help="resnet50: comma-separated variants to time (inplace, new, out, shared, "
                        "torch_inplace, torch_new, step), each with its MPI baseline")
    p.add_argument("--no-torch", action="store_true",
                   help="resnet50: leave out the ringred.torch and DistributedOptimizer variants")
    p.add_argument("--lat-iters", type=int, default=None,
                   help="resnet50: calls per timed round of the 4 KiB latency (default: 100 "
                        "with --device, else as many as fill ~50 ms)")
    p.add_argument("--min-bytes", type=int, default=8)
    p.add_argument("--max-bytes", type=int, default=64 << 20)
    p.add_argument("--rounds", type=int, default=7, help="timed rounds per size (median)")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--in-place", action="store_true",
                   help="sweep: every variant reduces in place (MPI_Allreduce with MPI_IN_PLACE)")
    p.add_argument("--hosts", type=int, default=0,
                   help="sweep: pose this machine as HOSTS hosts (RINGRED_HOST, contiguous "
                        "blocks of ranks) and time the hierarchical allreduce against the flat "
                        "MPI transport and MPI_Allreduce, 4 KiB .. 64 MiB")
    p.add_argument("--fit-model", action="store_true",
                   help="with --hosts 2 on 4 ranks: measure the pieces of the alpha-beta model "
                        "(docs/scaling.md), fit it, and compare it with the flat and "
                        "hierarchical allreduce measured in the same run")
    p.add_argument("--model", metavar="L,H", default=None,
                   help="print the model's allreduce times for H hosts of L ranks (no MPI "
                        "needed); parameters from --params or the shipped fit")
    p.add_argument("--params", default=None, help="--model: parameters (JSON of --fit-model)")
    p.add_argument("--fabric-gbps", type=float, default=None,
                   help="--model: between hosts a fabric of this many Gb/s instead of the "
                        "fitted MPI bandwidth")
    p.add_argument("--fabric-alpha-us", type=float, default=None,
                   help="--model: per-step latency between hosts in microseconds")
    p.add_argument("--shm-gbps", type=float, default=None,
                   help="--model: inside a host this many GB/s per rank instead of the fit")
    p.add_argument("--shm-alpha-us", type=float, default=None,
                   help="--model: per-step latency inside a host in microseconds")
    p.add_argument("--json", help="also write the rows as JSON to this file (rank 0)")
    p.add_argument("--plot", help="write bandwidth-vs-size curves to this PNG (needs matplotlib)")
    p.add_argument("--transports", default=None,
                   help="comma-separated ringred transports to time, e.g. shm,mpi; "
                        "shm+shared: shm with inputs from ringred.empty (default: "
                        "shm,shm+shared,mpi when every rank shares a host, else mpi)")
    args = p.parse_args(argv)
    if args.plot:
        from .plot import require_matplotlib

        require_matplotlib()  # before the sweep, not after it
    if args.device != "cpu" and args.workload == "sweep":
        p.error("--device applies to --workload resnet50/train; for the device allreduce "
                "table run benchmarks/gpu_bench.py")

    if args.model:
        from .model import load_params, predict_table

        per_host, hosts = (int(v) for v in args.model.split(","))
        k = load_params(args.params)
        if args.fabric_gbps:
            k.beta_mpi = 8 / (args.fabric_gbps * 1e9)
            k.link_per_host = True
            k.source += f"; between hosts {args.fabric_gbps:g} Gb/s"
        if args.fabric_alpha_us is not None:
            k.alpha_mpi = args.fabric_alpha_us * 1e-6
            k.source += f", {args.fabric_alpha_us:g} us per step"
        if args.shm_gbps:
            k.beta_shm = 1 / (args.shm_gbps * 1e9)
            k.source += f"; inside a host {args.shm_gbps:g} GB/s"
        if args.shm_alpha_us is not None:
            k.alpha_shm = args.shm_alpha_us * 1e-6
            k.source += f", {args.shm_alpha_us:g} us per step"
        print(predict_table(per_host, hosts, k))
        return
    if args.hosts:
        from .hosts import pose_as_hosts

        pose_as_hosts(args.hosts)
    ringred.init()
    if args.fit_model:
        from .model import fit, format_fit

        res = fit(args.rounds)
        _report(format_fit(res), res, args.json)
        return
    if args.hosts and args.workload == "sweep":
        from .hosts import HOST_SIZES, format_hosts, run_hosts

        rows = run_hosts([s for s in HOST_SIZES if args.min_bytes <= s <= args.max_bytes],
                         args.rounds, args.dtype)
        _report(format_hosts(rows, ringred.size(), args.hosts),
                {"ranks": ringred.size(), "hosts": args.hosts, "rows": rows}, args.json)
        return
    if args.workload == "resnet50" and args.device != "cpu":
        from .resnet50_device import format_resnet50_device, run_resnet50_device

        res = run_resnet50_device(args.device, rounds=args.rounds, shrink=args.shrink,
                                  lat_iters=args.lat_iters or 100)
        if ringred.rank() == 0:
            print(format_resnet50_device(res, ringred.size()), flush=True)
            if args.json:
                with open(args.json, "w") as f:
                    json.dump({"ranks": ringred.size(), "resnet50": res}, f, indent=1)
        ringred.shutdown()
        return
    if args.workload == "resnet50":
        from .resnet50 import format_resnet50, run_resnet50

        res = run_resnet50(max(args.rounds, 3), shrink=args.shrink,
                           torch_variants=not args.no_torch,
                           only=args.only.split(",") if args.only else None,
                           lat_iters=args.lat_iters)
        if ringred.rank() == 0:
            print(format_resnet50(res), flush=True)
            if args.json:
                with open(args.json, "w") as f:
                    json.dump({"ranks": ringred.size(), "resnet50": res}, f, indent=1)
        ringred.shutdown()
        return
    if args.workload == "ddp":
        from .ddp import format_ddp, run_ddp

        res = run_ddp(rounds=args.rounds, steps=args.steps)
        _report(format_ddp(res), res, args.json)
        return
    if args.workload == "train":
        from .train import format_train, run_train

        res = run_train(rounds=args.rounds, steps=args.steps, batch=args.batch,
                        width=args.width, device=args.device)
        _report(format_train(res), res, args.json)
        return
    one_host = ringred.local_size() == ringred.size()
    wanted = args.transports or ("shm,shm+shared,mpi" if one_host else "mpi")
    transports = [t.strip() for t in wanted.split(",") if t.strip()]
    contexts = contexts_for(transports)
    sizes = [s for s in DEFAULT_SIZES if args.min_bytes <= s <= args.max_bytes]
    try:
        rows = run_sweep(sizes, args.rounds, args.dtype, contexts, args.in_place)
    finally:
        for ctx in {id(c): c for c in contexts.values()}.values():
            if ctx is not ringred._state.current():
                ctx.close()
    if ringred.rank() == 0:
        print(format_table(rows, ringred.size(), ringred.transport(), args.in_place), flush=True)
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
