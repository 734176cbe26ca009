"""``python benchmarks/import_time.py [runs] [checkout ...]``: wall time of ``import ringred``
against ``import numpy, mpi4py.MPI`` in fresh interpreters, alternating, median of ``runs``
(5).  Each checkout (default: this one) is imported from its own directory, so two
checkouts compare in the same run.

Not a pytest file: timings are reported, never asserted."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BASE = "import numpy, mpi4py.MPI"
CASES = {
    "import ringred": "import ringred",
    "import ringred; ringred.init()": "import ringred; ringred.init(); ringred.shutdown()",
}


def _once(code: str, cwd: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=cwd, check=True)
    return time.perf_counter() - t0


def main(runs: int = 5, roots: list[Path] | None = None) -> None:
    """Print the median wall time of each case and its ratio to the first."""
    roots = roots or [ROOT]
    jobs = [(BASE, BASE, roots[0])] + [
        (f"{label} [{root.name}]" if len(roots) > 1 else label, code, root)
        for root in roots for label, code in CASES.items()]
    times: dict[str, list[float]] = {label: [] for label, _, _ in jobs}
    for _ in range(runs):
        for label, code, cwd in jobs:  # interleaved: load changes hit every case alike
            times[label].append(_once(code, cwd))
    base = statistics.median(times[BASE])
    print(f"{'case':44s} {'median s':>9s} {'min s':>7s} {'x numpy+mpi4py':>15s}  ({runs} runs)")
    for label, ts in times.items():
        med = statistics.median(ts)
        print(f"{label:44s} {med:9.3f} {min(ts):7.3f} {med / base:15.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5,
         [Path(p).resolve() for p in sys.argv[2:]])
