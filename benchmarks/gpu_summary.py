"""Markdown summary of one benchmarks/gpu_check.sh run: ``python gpu_summary.py LOG_DIR``.

Reads what the steps left in LOG_DIR (steps.tsv, the junit XML of the test steps, the JSON
of the benchmarks) and prints: the steps' outcomes and times, each test's outcome, the
ResNet-50 and training rows per device transport, and the allreduce table.  A missing or
broken file is reported as such; nothing is invented.
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gpu_bench  # noqa: E402

TRANSPORTS = ("ipc", "staged")


def _json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def steps(log: Path) -> list[str]:
    out = ["## Steps", "", "| step | outcome | seconds |", "|---|---|---|"]
    try:
        rows = [line.split("\t") for line in (log / "steps.tsv").read_text().splitlines()]
    except OSError:
        return out + ["", "(no steps.tsv)"]
    out += [f"| {r[0]} | {r[1]} | {r[2]} |" for r in rows if len(r) == 3]
    return out


def tests(log: Path, name: str) -> list[str]:
    out = [f"## {name}", ""]
    try:
        root = ET.parse(log / f"{name}.xml").getroot()
    except (OSError, ET.ParseError) as e:
        return out + [f"(no junit results: {e})"]
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    counts = {k: sum(int(s.get(k, 0)) for s in suites)
              for k in ("tests", "failures", "errors", "skipped")}
    out += [", ".join(f"{v} {k}" for k, v in counts.items()), "",
            "| test | outcome | message |", "|---|---|---|"]
    for case in root.iter("testcase"):
        outcome, msg = "passed", ""
        for tag in ("failure", "error", "skipped"):
            el = case.find(tag)
            if el is not None:
                outcome = tag
                msg = (el.get("message") or el.text or "").strip().splitlines()
                msg = msg[0][:160] if msg else ""
        msg = msg.replace("|", "\\|")
        out.append(f"| {case.get('name')} | {outcome} | {msg} |")
    return out


def resnet50(log: Path) -> list[str]:
    out = ["## ResNet-50 gradients on the GPU (161 float32 tensors, 2 ranks)", "",
           "ms per gradient set (median of rounds); speedup = that path's time / engine time",
           "", "| transport (reported) | engine async | sync per tensor | naive per tensor | "
           "naive concat | vs naive per tensor | vs naive concat | vs sync | 4 KiB async / "
           "sync / naive (us) |", "|---|---|---|---|---|---|---|---|---|"]
    for t in TRANSPORTS:
        d = _json(log / f"resnet50_{t}.json")
        if d is None:
            out.append(f"| {t}: no result | | | | | | | | |")
            continue
        r = d["resnet50"]
        e = r["engine"]
        ms = [f"{r[k] * 1e3:.2f}" for k in ("engine", "sync_per_tensor", "naive_per_tensor",
                                            "naive_concat")]
        sp = [f"{r[k] / e:.2f}x" for k in ("naive_per_tensor", "naive_concat",
                                           "sync_per_tensor")]
        lat = " / ".join(f"{r[f'lat4k_{k}'] * 1e6:.1f}" for k in ("async", "sync", "naive"))
        out.append(f"| {t} (engine {r['engine_transport']}, sync {r['transport']}"
                   f"{': ' + r['engine_reason'] if r['engine_reason'] else ''}) | "
                   + " | ".join(ms + sp)
                   + f" | {lat} |")
    return out


def train(log: Path) -> list[str]:
    out = ["## Training step on the GPU (MLP, DistributedOptimizer vs mpi4py)", "",
           "| transport (reported) | params | ringred ms/step | mpi4py ms/step | compute "
           "ms/step | ringred / mpi4py | same weights |", "|---|---|---|---|---|---|---|"]
    for t in TRANSPORTS:
        d = _json(log / f"train_{t}.json")
        if d is None:
            out.append(f"| {t}: no result | | | | | | |")
            continue
        m = d["median_s"]
        why = f": {d['engine_reason']}" if d.get("engine_reason") else ""
        out.append(f"| {t} (engine {d.get('engine_transport')}{why}) | {d['params']:,} | "
                   f"{m['ringred'] * 1e3:.2f} | {m['mpi4py'] * 1e3:.2f} | "
                   f"{m['compute'] * 1e3:.2f} | {m['ringred'] / m['mpi4py']:.3f} | "
                   f"{d['same_weights']} |")
    return out


def allreduce(log: Path) -> list[str]:
    out = ["## Allreduce table", ""]
    paths = [str(log / "allreduce.json"), str(log / "nccl.json")]
    if _json(log / "allreduce.json") is None:
        return out + ["(no allreduce.json)"]
    try:
        return out + [gpu_bench.table(paths, markdown=True)]
    except Exception as e:  # a partial file: say so, keep the rest of the summary
        return out + [f"(table failed: {type(e).__name__}: {e})"]


def main() -> None:
    log = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/gpu_check")
    head = ["# ringred GPU check", ""]
    try:
        head += ["```", (log / "machine.log").read_text().strip()[:1500], "```"]
    except OSError:
        pass
    parts = [head, steps(log), tests(log, "gpu_tests"), tests(log, "gpu_tests_sync"),
             resnet50(log), allreduce(log), train(log), tests(log, "fake_tests")]
    print("\n\n".join("\n".join(p) for p in parts))


if __name__ == "__main__":
    main()
