"""The package's structure: one seam to C, and an import graph without cycles.

- Only the seam (ringred/_lib.py, with its loader ringred/_libmpi.py) touches the cffi
  extension: no other module imports ``ringred._ringred`` or cffi, or names ``ffi``/``lib``.
- Every module imports alone, in a fresh interpreter.
- The graph of the package's own imports (those inside functions included) has no cycle.
- Production code never imports ringred.testing (the test helpers register themselves).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "ringred"
SEAM = {"ringred._lib", "ringred._libmpi"}
CFFI_NAMES = {"ffi", "lib"}
# Modules still reaching into the seam's cffi objects, each with the change that moves it
# to the seam's helpers.  Empty this as they go; the test fails on any other module.
PENDING: dict[str, str] = {}
# Imports still closing a cycle, with the change that removes them (same rule as PENDING).
PENDING_EDGES: dict[tuple[str, str], str] = {}


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PKG.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _package_of(name: str) -> str:
    return name if MODULES[name].name == "__init__.py" else name.rpartition(".")[0]


def _imports(name: str) -> list[tuple[str, list[str], int]]:
    """(absolute module, imported names, line) for every import statement of ``name``."""
    tree = ast.parse(MODULES[name].read_text(), str(MODULES[name]))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, [], node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = _package_of(name).split(".")
                pkg = pkg[: len(pkg) - (node.level - 1)]
                base = ".".join(pkg + ([node.module] if node.module else []))
            out.append((base, [a.name for a in node.names], node.lineno))
    return out


def _is_module(name: str) -> bool:
    """A module of the package, or its C extension."""
    parent, _, leaf = name.rpartition(".")
    return name in MODULES or any(ROOT.joinpath(*parent.split(".")).glob(f"{leaf}.*.so"))


def _edges(name: str) -> set[str]:
    """The package modules ``name`` imports (a ``from m import x`` of a submodule x counts
    as an import of m.x; of a name defined in m, of m)."""
    out = set()
    for mod, names, _ in _imports(name):
        if not (mod == "ringred" or mod.startswith("ringred.")):
            continue
        subs = [f"{mod}.{n}" for n in names if _is_module(f"{mod}.{n}")]
        out.update(subs)
        if len(subs) < len(names) or not names:
            out.add(mod)
    out.discard(name)
    return {m for m in out if m in MODULES}


def test_only_the_seam_touches_cffi():
    bad = []
    for name, path in MODULES.items():
        if name in SEAM:
            continue
        for mod, names, line in _imports(name):
            if mod.split(".")[0] == "cffi" or mod.endswith("_ringred") or (
                    mod in ("ringred", "ringred._ringred") and "_ringred" in names):
                bad.append(f"{name}:{line} imports the cffi extension")
            if mod in SEAM and CFFI_NAMES & set(names):
                bad.append(f"{name}:{line} imports {sorted(CFFI_NAMES & set(names))} from {mod}")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Name) and node.id in CFFI_NAMES:
                bad.append(f"{name}:{node.lineno} refers to '{node.id}'")
            elif isinstance(node, ast.Attribute) and node.attr in CFFI_NAMES:
                bad.append(f"{name}:{node.lineno} refers to '.{node.attr}'")
    pending = [b for b in bad if b.split(":")[0] in PENDING]
    assert [b for b in bad if b not in pending] == [], "only ringred/_lib.py may use cffi"
    # a pending module that no longer needs its exemption must leave the list
    assert {b.split(":")[0] for b in pending} == set(PENDING), (pending, PENDING)


def test_the_check_sees_a_violation(tmp_path, monkeypatch):
    """The cffi check is not vacuous: a module naming ``lib`` is caught."""
    bad = PKG / "_seam_probe_tmp.py"
    assert not bad.exists()
    monkeypatch.setitem(MODULES, "ringred._seam_probe_tmp", tmp_path / "probe.py")
    (tmp_path / "probe.py").write_text("from ._lib import lib\nlib.rr_barrier(None)\n")
    with pytest.raises(AssertionError):
        test_only_the_seam_touches_cffi()


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_cycle_finder_finds_cycles():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_import_graph_has_no_cycle():
    graph = {name: _edges(name) for name in MODULES}
    assert sum(len(e) for e in graph.values()) > 50, graph  # the parser sees the imports
    assert "ringred._args" in graph["ringred.collectives"]
    for a, b in PENDING_EDGES:
        assert b in graph[a], f"{a} no longer imports {b}: remove it from PENDING_EDGES"
        graph[a].discard(b)
    assert _cycles(graph) == []


def test_production_code_never_imports_testing():
    # (the benchmarks may: `python -m ringred.bench device` runs the fake device on purpose)
    bad = [f"{name}:{line}" for name in MODULES
           if name != "ringred.testing" and not name.startswith("ringred.bench")
           for mod, names, line in _imports(name)
           if mod == "ringred.testing" or (mod == "ringred" and "testing" in names)]
    assert bad == []


# Frameworks an optional subpackage needs: its modules are skipped where it is missing.
_ADAPTERS = ("ringred.jax", "ringred.mxnet", "ringred.torch", "ringred.optim", "ringred.bench")
_OPTIONAL = ("torch", "jax", "optax", "mxnet", "flax", "ml_dtypes", "matplotlib", "cupy")

_IMPORT_ALONE = r"""
import importlib, json, sys, traceback
failed, skipped = {}, {}
for name in json.loads(sys.argv[1]):
    for m in [m for m in sys.modules if m == "ringred" or m.startswith("ringred.")]:
        del sys.modules[m]
    try:
        importlib.import_module(name)
    except Exception as exc:
        # a missing optional framework, raised as is or as the cause of an ImportError
        cause = exc
        while cause is not None and not isinstance(cause, ModuleNotFoundError):
            cause = cause.__cause__ or cause.__context__
        missing = (getattr(cause, "name", None) or "").split(".")[0]
        if missing in json.loads(sys.argv[2]):
            skipped[name] = missing
        else:
            failed[name] = traceback.format_exc()
print(json.dumps({"failed": failed, "skipped": skipped}))
"""


def test_every_module_imports_alone():
    names = [n for n in MODULES if not n.endswith("__main__")]
    proc = subprocess.run(
        [sys.executable, "-c", _IMPORT_ALONE, json.dumps(names), json.dumps(_OPTIONAL)],
        capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert res["failed"] == {}, "\n".join(res["failed"].values())
    # only the framework adapters may need an optional framework
    core = [n for n in res["skipped"] if not n.startswith(_ADAPTERS)]
    assert core == [], res["skipped"]
    print("skipped (framework missing):", res["skipped"])
