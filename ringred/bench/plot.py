"""Bandwidth-vs-size curves as a PNG (optional: needs matplotlib)."""

from __future__ import annotations


def plot_rows(rows: list[dict], n: int, path: str) -> None:
    """Plot busbw of ringred and MPI_Allreduce against message size."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise SystemExit("--plot needs matplotlib: pip install 'ringred[plot]'") from exc
    xs = [r["bytes"] for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(xs, [r["ringred_busbw"] for r in rows], "o-", label="ringred")
    ax.plot(xs, [r["mpi_busbw"] for r in rows], "s--", label="MPI_Allreduce")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("message size (bytes)")
    ax.set_ylabel("busbw (GB/s)")
    ax.set_title(f"allreduce, {n} ranks")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
