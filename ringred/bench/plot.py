"""Bandwidth-vs-size curves as a PNG (optional: needs matplotlib)."""

from __future__ import annotations

from .sweep import BASELINE


def require_matplotlib() -> None:
    """Exit with an install hint unless matplotlib can be imported."""
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        raise SystemExit("--plot needs matplotlib: pip install 'ringred[plot]'")


def plot_rows(rows: list[dict], n: int, path: str) -> None:
    """Plot busbw of every ringred transport and of MPI_Allreduce against message size."""
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [r["bytes"] for r in rows]
    labels = [k for k in rows[0] if isinstance(rows[0][k], dict)] if rows else []
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, style in zip(labels, ["o-", "^-", "v-", "d-", "x-"], strict=False):
        name = label if label == BASELINE else f"ringred ({label})"
        ax.plot(xs, [r[label]["busbw"] for r in rows], "s--" if label == BASELINE else style,
                label=name)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("message size (bytes)")
    ax.set_ylabel("busbw (GB/s)")
    ax.set_title(f"allreduce, {n} ranks")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
