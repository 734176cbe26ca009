"""Alpha-beta cost model of the allreduce plans (docs/scaling.md).

A step that moves ``b`` bytes costs ``alpha + b * beta``.  Per rank, for P ranks as H hosts of
L ranks each and a message of N bytes:

* flat ring (MPI transport): ``2 (P-1) alpha_m + 2 (P-1)/P N beta_m``;
* small-message path (recursive doubling, N <= RINGRED_SMALL_BYTES):
  ``ceil(log2 P) (alpha_m + N beta_m)``;
* hierarchical: the agreement ``ceil(log2 P) alpha_m``, a reduce-scatter and an allgather
  inside the host, ``2 (alpha_s + N beta_s)``, and the ring across hosts on N/L bytes,
  ``2 (H-1) alpha_m + 2 (H-1)/H (N/L) beta_m``; when the L ranks of a host share one link
  (a NIC: ``link_per_host``), their L rings share it too and beta_m counts L times.
  The flat ring is bound by its slowest edge: with ``link_per_host``, the slower of the
  fabric and a host's memory path (its edges inside a host).

``fit`` measures the pieces on this machine (``mpiexec -n 4 python -m ringred.bench
--fit-model``: 4 ranks posed as 2 hosts of 2): the shared-memory reduce-scatter + allgather
inside each host and the MPI allreduce between the hosts, all hosts at once as in the plan,
and fits the four parameters by least squares; it then times the flat ring and the
hierarchical plan on the same 4 ranks, which the fit never saw, and reports the model's
error on them.  ``--model L,H`` prints the predictions for H hosts of L ranks.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

PARAMS_FILE = Path(__file__).with_name("model_params.json")
FIT_SIZES = [64 << 10, 256 << 10, 1 << 20, 4 << 20, 16 << 20]


@dataclass
class Params:
    """Seconds per step (alpha) and per byte (beta): MPI between hosts, shm inside one."""

    alpha_mpi: float
    beta_mpi: float
    alpha_shm: float
    beta_shm: float
    small_bytes: int = 64 << 10
    source: str = ""
    # beta_mpi is one link per host (a NIC the host's ranks share), not one per rank: the L
    # concurrent rings across hosts of the hierarchical plan share it
    link_per_host: bool = False


def t_ring(p: int, nbytes: float, alpha: float, beta: float) -> float:
    """Ring allreduce of nbytes over p ranks."""
    if p <= 1:
        return 0.0
    return 2 * (p - 1) * alpha + 2 * (p - 1) / p * nbytes * beta


def t_small(p: int, nbytes: float, alpha: float, beta: float) -> float:
    """Recursive doubling (the latency path) of nbytes over p ranks."""
    if p <= 1:
        return 0.0
    return math.ceil(math.log2(p)) * (alpha + nbytes * beta)


def t_flat(p: int, nbytes: float, k: Params) -> float:
    """The flat MPI transport: small path up to small_bytes, else the ring."""
    if nbytes <= k.small_bytes:
        return t_small(p, nbytes, k.alpha_mpi, k.beta_mpi)
    # on a cluster the ring's edges inside a host are as slow as the host's memory path
    beta = max(k.beta_mpi, k.beta_shm) if k.link_per_host else k.beta_mpi
    return t_ring(p, nbytes, k.alpha_mpi, beta)


def t_local(ranks: int, nbytes: float, k: Params) -> float:
    """Reduce-scatter + allgather inside one host of ``ranks`` ranks."""
    return 0.0 if ranks <= 1 else 2 * (k.alpha_shm + nbytes * k.beta_shm)


def t_hier(per_host: int, hosts: int, nbytes: float, k: Params) -> float:
    """The hierarchical plan (messages above small_bytes; below, the flat small path)."""
    p = per_host * hosts
    if nbytes <= k.small_bytes:
        return t_small(p, nbytes, k.alpha_mpi, k.beta_mpi)
    agree = math.ceil(math.log2(p)) * k.alpha_mpi if p > 1 else 0.0
    beta = k.beta_mpi * (per_host if k.link_per_host else 1)
    return agree + t_local(per_host, nbytes, k) + t_ring(hosts, nbytes / per_host, k.alpha_mpi,
                                                         beta)


def fit_alpha_beta(steps: list[float], nbytes: list[float], secs: list[float]
                   ) -> tuple[float, float]:
    """Least squares of secs = steps * alpha + nbytes * beta, relative errors weighted alike."""
    a = np.array([steps, nbytes], dtype=np.float64).T
    y = np.array(secs, dtype=np.float64)
    w = 1.0 / y
    sol, *_ = np.linalg.lstsq(a * w[:, None], y * w, rcond=None)
    return float(max(sol[0], 0.0)), float(max(sol[1], 0.0))


def load_params(path: str | None = None) -> Params:
    """Params from a JSON file (``--fit-model --json``), default the shipped fit."""
    with open(path or PARAMS_FILE) as f:
        d = json.load(f)
    return Params(**d.get("params", d))


def fit(rounds: int = 5, sizes: list[int] | None = None) -> dict:
    """Collective, 4 ranks posed as 2 hosts: measure, fit, check on unseen points."""
    from mpi4py import MPI

    import ringred
    from ringred import _state

    from .hosts import _env
    from .timing import compare

    w = MPI.COMM_WORLD
    if w.Get_size() != 4 or ringred.local_size() != 2:
        raise SystemExit("--fit-model runs on 4 ranks posed as 2 hosts (mpiexec -n 4 python "
                         "-m ringred.bench --fit-model --hosts 2)")
    sizes = sizes or FIT_SIZES
    r = w.Get_rank()
    host = w.Split(r // 2, r)  # the hosts of pose_as_hosts(2): contiguous pairs
    cross = w.Split(ringred.local_rank(), r)
    with _env(RINGRED_HIERARCHICAL="0"):
        local = _state.Context(host, "shm")
        across = _state.Context(cross, "mpi")
        flat = _state.Context(w, "mpi")
    with _env(RINGRED_HIERARCHICAL="1", RINGRED_SMALL_BYTES="0"):
        hier = _state.Context(w)
    small = int(os.environ.get("RINGRED_SMALL_BYTES", 64 << 10))
    rows = []
    try:
        for nb in sizes:
            n = nb // 4
            x = np.ones(n, np.float32)
            y = np.empty_like(x)
            half = np.ones(n // 2, np.float32)

            def on(ctx, fn):
                def run() -> None:
                    with _state.using(ctx):
                        fn()
                return run

            def pieces(x=x, half=half) -> None:
                ringred.reducescatter(x, op=ringred.Sum)
                ringred.allgather(half)

            fns = {
                "local": on(local, pieces),
                "across": on(across, lambda half=half: ringred.allreduce(
                    half, op=ringred.Sum, out=half)),
                "flat": on(flat, lambda x=x, y=y: ringred.allreduce(x, op=ringred.Sum, out=y)),
                "hier": on(hier, lambda x=x, y=y: ringred.allreduce(x, op=ringred.Sum, out=y)),
            }
            med = compare(fns, nb, rounds, w)
            rows.append({"bytes": nb, **med})
    finally:
        for c in (local, across, flat, hier):
            c.close()
        host.Free()
        cross.Free()
    # shm: two steps of ~N each; MPI: the 2-rank ring on N/2 bytes (2 steps, N/2 bytes)
    a_s, b_s = fit_alpha_beta([2.0] * len(rows), [2.0 * q["bytes"] for q in rows],
                              [q["local"] for q in rows])
    a_m, b_m = fit_alpha_beta([2.0] * len(rows), [q["bytes"] / 2 for q in rows],
                              [q["across"] for q in rows])
    k = Params(a_m, b_m, a_s, b_s, small,
               f"fitted by --fit-model on {os.uname().nodename}, {os.cpu_count()} CPUs, "
               f"MPI: {' '.join(MPI.Get_library_version().splitlines()[0].split())}")
    for q in rows:
        q["flat_model"] = t_flat(4, q["bytes"], k)
        q["hier_model"] = t_hier(2, 2, q["bytes"], Params(**{**asdict(k), "small_bytes": 0}))
    return {"params": asdict(k), "rows": rows}


def format_fit(res: dict) -> str:
    """The fitted parameters and the model against the points it was not fitted on."""
    k = res["params"]
    lines = [
        "# alpha-beta fit, 4 ranks posed as 2 hosts of 2 (medians of interleaved rounds)",
        f"MPI between hosts: alpha {k['alpha_mpi'] * 1e6:.1f} us, beta "
        f"{k['beta_mpi'] * 1e9:.3f} ns/B ({1 / max(k['beta_mpi'], 1e-30) / 1e9:.2f} GB/s)",
        f"shm inside a host: alpha {k['alpha_shm'] * 1e6:.1f} us, beta "
        f"{k['beta_shm'] * 1e9:.3f} ns/B ({1 / max(k['beta_shm'], 1e-30) / 1e9:.2f} GB/s)",
        f"{'size':>10} | {'local us':>9} {'across us':>10} | {'flat us':>9} {'model':>9} "
        f"{'err':>6} | {'hier us':>9} {'model':>9} {'err':>6}",
    ]
    for q in res["rows"]:
        ef = q["flat_model"] / q["flat"] - 1
        eh = q["hier_model"] / q["hier"] - 1
        lines.append(
            f"{q['bytes'] >> 10:>7} KiB | {q['local'] * 1e6:9.0f} {q['across'] * 1e6:10.0f} | "
            f"{q['flat'] * 1e6:9.0f} {q['flat_model'] * 1e6:9.0f} {ef:+6.0%} | "
            f"{q['hier'] * 1e6:9.0f} {q['hier_model'] * 1e6:9.0f} {eh:+6.0%}")
    lines.append("local, across: the fitted pieces; flat (4-rank ring) and hier (2x2 plan): "
                 "measured in the same run, not used by the fit; err = model / measured - 1")
    return "\n".join(lines)


def predict_table(per_host: int, hosts: int, k: Params,
                  sizes: list[int] | None = None) -> str:
    """Predicted allreduce times for H hosts of L ranks: flat, hierarchical, speedup."""
    sizes = sizes or [4 << (2 * i) for i in range(5, 14)]
    p = per_host * hosts
    lines = [
        f"# model: {hosts} hosts x {per_host} ranks = {p} ranks; MPI alpha "
        f"{k.alpha_mpi * 1e6:.2f} us, {1 / k.beta_mpi / 1e9:.2f} GB/s; shm alpha "
        f"{k.alpha_shm * 1e6:.2f} us, {1 / k.beta_shm / 1e9:.2f} GB/s ({k.source})",
        f"{'size':>10} | {'flat us':>12} {'hier us':>12} {'flat/hier':>9} | "
        f"{'hier busbw GB/s':>15}",
    ]
    for nb in sizes:
        tf, th = t_flat(p, nb, k), t_hier(per_host, hosts, nb, k)
        bus = nb / th * 2 * (p - 1) / p / 1e9 if th > 0 and p > 1 else 0.0
        label = f"{nb >> 20} MiB" if nb >= 1 << 20 else f"{nb >> 10} KiB"
        lines.append(f"{label:>10} | {tf * 1e6:12.1f} {th * 1e6:12.1f} {tf / th:8.2f}x | "
                     f"{bus:15.2f}")
    return "\n".join(lines)
