"""The C core's layers (issue 16): csrc/ holds the public header and one folder per layer, and
no folder uses a later one, so the folders form no circle.

The graph comes from the sources themselves, no compiler needed: a file of folder A uses folder
B when it includes a header of B (``#include "B/x.h"``) or names a function or variable that a
.c file of B defines (not ``static``).  The order, lowest first:

  core    the communicator's state, errors, settings, kernels, copies, liveness, agreement
          headers, the transport interface (core/transport.h), the hash table
  mpi     the MPI transport: waits, agreement, ring, binomial tree and chain
  shm     the shared-memory transport
  coll    the collective front: checks, hierarchical plan, communicator creation (it picks
          the transport table, so it sits above both transports)
  device  GPU buffers: staging through the host collectives, CUDA IPC over the shm segment
  engine  the background engine: queue, negotiation, cache, fusion, timeline

mpi and shm are peers: neither may use the other.  Run it alone:
``python -m pytest -q tests/test_csrc_layers.py``."""

from __future__ import annotations

import re
from pathlib import Path

CSRC = Path(__file__).resolve().parent.parent / "csrc"
ROOT = CSRC.parent
# folder -> rank; a folder may use only folders of a lower rank
LAYERS = {"core": 0, "mpi": 1, "shm": 1, "coll": 2, "device": 3, "engine": 4}
PUBLIC = {"ringred.h"}
NOT_LAYERS = {"tests"}  # C check programs, built by the tests against the whole core

_COMMENT = re.compile(r"/\*.*?\*/|//[^\n]*", re.S)
_LITERAL = re.compile(r'"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'')
_PREPRO = re.compile(r"^[ \t]*#(?:[^\n]*\\\n)*[^\n]*", re.M)
_INCLUDE = re.compile(r'^[ \t]*#[ \t]*include[ \t]+"([^"]+)"', re.M)
_IDENT = re.compile(r"[A-Za-z_]\w*")
_ASSIGN = re.compile(r"(?<![<>=!])=(?!=)")


def _strip(text: str) -> str:
    text = _COMMENT.sub(" ", text)
    text = _LITERAL.sub('""', text)
    return _PREPRO.sub(" ", text)


def _top_level(code: str) -> list[tuple[str, bool]]:
    """Top-level pieces of stripped C: (text before a '{' or ';' at depth 0, opens_brace).  The
    piece that ends a type or initializer block (``} name;``) carries that block's head."""
    out, depth, start, carry = [], 0, 0, ""
    for i, ch in enumerate(code):
        if ch == "{":
            if depth == 0:
                head = carry + code[start:i]
                out.append((head, True))
                function = "(" in head and not _ASSIGN.search(head)
                carry = "" if function else head + "{} "
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                start = i + 1
        elif ch == ";" and depth == 0:
            out.append((carry + code[start:i], False))
            start, carry = i + 1, ""
    return out


def definitions(text: str) -> tuple[set[str], set[str]]:
    """(external names, static names) that C source ``text`` defines at file scope."""
    ext, static = set(), set()
    for head, brace in _top_level(_strip(text)):
        words = _IDENT.findall(head)
        if not words or {"typedef", "extern", "_Static_assert"} & set(words):
            continue
        if _ASSIGN.search(head):  # a variable with an initializer
            names = _IDENT.findall(_ASSIGN.split(head)[0].split("[")[0])
        elif "(" in head and brace:  # a function definition
            names = _IDENT.findall(head.split("(")[0])
        elif "(" not in head and not brace and words[0] not in ("struct", "enum", "union"):
            names = words  # a variable without initializer
        else:
            continue  # a prototype, or a struct/enum/union definition
        if names:
            (static if "static" in words else ext).add(names[-1])
    return ext, static


def scan(csrc: Path) -> dict[Path, tuple[set[str], set[str], set[str], list[str]]]:
    """Per C file of the layer folders: (defined, static, identifiers used, included)."""
    out = {}
    for f in sorted(csrc.glob("*/*.[ch]")):
        if f.parent.name in NOT_LAYERS:
            continue
        text = f.read_text(errors="replace")
        ext, static = definitions(text) if f.suffix == ".c" else (set(), set())
        used = set(_IDENT.findall(_strip(text)))
        out[f] = (ext, static, used, _INCLUDE.findall(text))
    return out


def folder_edges(csrc: Path) -> dict[tuple[str, str], list[str]]:
    """(from folder, to folder) -> why: the file and the name or header that makes the edge."""
    files = scan(csrc)
    owner: dict[str, str] = {}
    for f, (ext, _, _, _) in files.items():
        for name in ext:
            owner[name] = f.parent.name
    edges: dict[tuple[str, str], list[str]] = {}
    for f, (ext, static, used, incs) in files.items():
        a = f.parent.name
        rel = f.relative_to(csrc)
        for inc in incs:
            b = inc.split("/")[0] if "/" in inc else None
            if b and b != a:
                edges.setdefault((a, b), []).append(f"{rel} includes {inc}")
        for name in sorted(used - ext - static):
            b = owner.get(name)
            if b and b != a:
                edges.setdefault((a, b), []).append(f"{rel} uses {name}")
    return edges


def violations(edges: dict[tuple[str, str], list[str]], layers: dict[str, int]) -> list[str]:
    """Every edge that does not go to a strictly lower layer (or to an unknown folder)."""
    bad = []
    for (a, b), why in sorted(edges.items()):
        if a not in layers or b not in layers or layers[b] >= layers[a]:
            bad.append(f"{a} -> {b}: {why[:3]}")
    return bad


def cycles(edges) -> list[list[str]]:
    """The folder cycles of the graph (one per back edge found by a depth-first search)."""
    graph: dict[str, set[str]] = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
    found, state, path = [], {}, []

    def visit(n: str) -> None:
        state[n] = 1
        path.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                found.append(path[path.index(m):] + [m])
            elif m not in state:
                visit(m)
        path.pop()
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n)
    return found


def test_only_the_public_header_and_layer_folders_in_csrc():
    flat = sorted(p.name for p in CSRC.iterdir() if p.is_file() and p.name not in PUBLIC)
    assert flat == [], f"files directly in csrc/ (put them in a layer folder): {flat}"
    folders = {p.name for p in CSRC.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert folders == set(LAYERS) | NOT_LAYERS, folders


def test_the_build_compiles_the_same_layers():
    """ringred_build.py lists the same folders, lowest first (it is not imported: it asks
    mpicc for flags at import)."""
    text = (ROOT / "ringred_build.py").read_text()
    listed = re.search(r"^LAYERS = \(([^)]*)\)", text, re.M)
    assert listed, "LAYERS not found in ringred_build.py"
    names = re.findall(r'"(\w+)"', listed.group(1))
    assert names == sorted(LAYERS, key=lambda k: (LAYERS[k], names.index(k))), names
    assert set(names) == set(LAYERS)


def test_the_parser_sees_definitions_and_uses():
    ext, static = definitions(
        "static int helper(int a)\n{\n    return a;\n}\n"
        "rr_status rr_thing(rr_comm *c,\n                   int x)\n{\n    return helper(x);\n}\n"
        "const rr_transport_ops rr_table = {\n    .name = \"x\",\n};\n"
        "typedef struct foo { int a; } foo;\nstruct bar {\n    int b;\n};\n"
        "rr_status rr_proto(int a);\nextern int rr_ext;\nint rr_counter;\n"
        "_Static_assert(sizeof(int) <= 8, \"\");\n"
    )
    assert ext == {"rr_thing", "rr_table", "rr_counter"}, ext
    assert static == {"helper"}, static
    files = scan(CSRC)
    owner = {n: f.parent.name for f, (ext, _, _, _) in files.items() for n in ext}
    assert owner["rr_allreduce"] == "coll" and owner["rr_mpi_ops"] == "mpi", owner
    assert owner["rr_shm_ops"] == "shm" and owner["rr_engine_create"] == "engine"
    assert owner["rr_fail"] == "core" and owner["rr_smap_put"] == "core"
    assert len(owner) > 250, len(owner)


def test_the_check_catches_an_upward_use_and_a_circle(tmp_path):
    """A core file calling an engine function, and two peers using each other, are found."""
    for folder, text in {
        "core/a.c": "void rr_a(void)\n{\n    rr_e();\n}\n",
        "engine/e.c": '#include "core/x.h"\nvoid rr_e(void)\n{\n    rr_a();\n}\n',
        "mpi/m.c": '#include "shm/s.h"\nvoid rr_m(void)\n{\n}\n',
        "shm/s.c": "void rr_s(void)\n{\n    rr_m();\n}\n",
    }.items():
        (tmp_path / folder).parent.mkdir(exist_ok=True)
        (tmp_path / folder).write_text(text)
    edges = folder_edges(tmp_path)
    assert set(edges) == {("core", "engine"), ("engine", "core"), ("mpi", "shm"),
                          ("shm", "mpi")}, edges
    bad = violations(edges, LAYERS)
    assert [v.split(":")[0] for v in bad] == ["core -> engine", "mpi -> shm", "shm -> mpi"], bad
    assert sorted(map(tuple, cycles(edges))) == [("core", "engine", "core"),
                                                  ("mpi", "shm", "mpi")]


def test_no_layer_uses_a_later_one():
    edges = folder_edges(CSRC)
    assert edges, "no edges found: the scan is broken"
    assert violations(edges, LAYERS) == []
    assert cycles(edges) == []
