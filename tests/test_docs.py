"""Executable docs: every ```python block of README.md and docs/*.md runs, or says why not.

Convention: an HTML comment (invisible on GitHub, visible in the source) right before a
```python block says what to do with it; anything may come between the comment and the
block except another ```python block (so a ``<details>`` fold can hold a setup block):

* ``<!-- doctest: run -->``     run it in one process (``python block.py``);
* ``<!-- doctest: mpi -->``     run it under ``mpiexec -n 2`` (it calls collectives);
* ``<!-- doctest: setup -->``   not run alone: prepended to the next ``run``/``mpi`` block of
  the same file (put it in a ``<details>`` fold: what the snippet assumes, e.g. a model);
* ``<!-- doctest: skip: reason -->``  not run, with the reason (GPU-only, a fragment of the
  block above, an import of Horovod...).

A ```python block without a marker fails ``test_every_python_block_is_marked``, so the choice
to run a block or not is always made in the doc itself.  Blocks run in a temporary directory
with the checkout on PYTHONPATH and must use small data (each has ``TIMEOUT`` seconds).
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from .mpi import ROOT, mpiexec, worker_env

TIMEOUT = 120
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_MARK = re.compile(r"<!--\s*doctest:\s*(run|mpi|setup|skip)\s*(?::\s*(.*?))?\s*-->")
_FENCE = re.compile(r"^```(\w*)\s*$")


@dataclass
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    code: str
    mark: str | None  # run | mpi | setup | skip | None (unmarked)
    reason: str
    setup: str  # setup blocks of the same file before it (for run / mpi)

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def blocks(path: Path) -> list[Block]:
    """The ```python blocks of one Markdown file, with their markers."""
    lines = path.read_text().splitlines()
    out: list[Block] = []
    mark: tuple[str, str] | None = None
    setup: list[str] = []
    i = 0
    while i < len(lines):
        m = _MARK.search(lines[i])
        if m:
            mark = (m.group(1), m.group(2) or "")
        f = _FENCE.match(lines[i])
        if f:
            j = i + 1
            while j < len(lines) and not lines[j].startswith("```"):
                j += 1
            if f.group(1) == "python":
                code = "\n".join(lines[i + 1:j]) + "\n"
                kind, reason = mark or (None, "")
                out.append(Block(path, i + 1, code, kind, reason, "".join(setup)))
                if kind == "setup":
                    setup.append(code)
                elif kind in ("run", "mpi"):
                    setup = []
                mark = None
            i = j
        i += 1
    return out


ALL = [b for p in DOCS for b in blocks(p)]
RUNNABLE = [b for b in ALL if b.mark in ("run", "mpi")]


def test_the_docs_have_runnable_blocks():
    assert ALL and len(RUNNABLE) >= 8, [b.id for b in RUNNABLE]
    assert any(b.id.startswith("README.md") and "ringred.data.shard" in b.code
               for b in RUNNABLE), "the README's Train snippet must run"


def test_every_python_block_is_marked():
    unmarked = [b.id for b in ALL if b.mark is None]
    assert not unmarked, f"mark these blocks (see {__name__}'s docstring): {unmarked}"
    no_reason = [b.id for b in ALL if b.mark == "skip" and not b.reason]
    assert not no_reason, f"a skipped block needs a reason: {no_reason}"
    dangling = [b.id for p in DOCS for b in blocks(p)[-1:] if b.mark == "setup"]
    assert not dangling, f"a setup block must come before a run/mpi block: {dangling}"


@pytest.mark.parametrize("block", RUNNABLE, ids=[b.id for b in RUNNABLE])
def test_block_runs(block: Block, tmp_path: Path):
    script = tmp_path / "block.py"
    script.write_text(block.setup + block.code)
    cmd = [sys.executable, str(script)]
    if block.mark == "mpi":
        cmd = [mpiexec(), "-n", "2", *cmd]
    try:
        res = subprocess.run(cmd, cwd=tmp_path, env=worker_env(), capture_output=True,
                             text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{block.id} ran longer than {TIMEOUT} s")
    assert res.returncode == 0, (
        f"{block.id} failed (rc={res.returncode})\n--- code:\n{block.setup}{block.code}\n"
        f"--- stdout:\n{res.stdout[-3000:]}\n--- stderr:\n{res.stderr[-3000:]}")
