"""No function of the C core (csrc/<layer>/*.c, outside csrc/tests and the generated PTX table) is
longer than 100 lines: long loops are split into named phases (issue 16)."""

from __future__ import annotations

import re
from pathlib import Path

CSRC = Path(__file__).resolve().parent.parent / "csrc"
LIMIT = 100
GENERATED = {"dev_kernel_ptx.c"}
# a function definition: a line starting at column 0 that ends with ')' followed by '{'
_HEAD = re.compile(r"^[A-Za-z_].*\)\s*$")


def functions(text: str) -> list[tuple[str, int]]:
    """(name, length in lines) of every top-level function definition in C source ``text``."""
    lines = text.split("\n")
    out, i = [], 0
    while i < len(lines):
        if _HEAD.match(lines[i]) and i + 1 < len(lines) and lines[i + 1].startswith("{"):
            names = re.findall(r"(\w+)\s*\(", lines[i])
            j, depth = i + 1, 0
            while j < len(lines):
                depth += lines[j].count("{") - lines[j].count("}")
                if depth == 0 and lines[j].startswith("}"):
                    break
                j += 1
            out.append((names[0] if names else lines[i], j - i + 1))
            i = j
        i += 1
    return out


def test_parser_measures_functions():
    src = "static int f(int a)\n{\n    if (a) {\n        return 1;\n    }\n    return 0;\n}\n"
    assert functions(src) == [("f", 7)]


def test_no_function_is_longer_than_the_limit():
    files = [f for f in sorted(CSRC.glob("*/*.c")) if f.parent.name != "tests"]
    long = [(f.name, name, n) for f in files if f.name not in GENERATED
            for name, n in functions(f.read_text()) if n > LIMIT]
    seen = sum(len(functions(f.read_text())) for f in files)
    assert seen > 300, seen  # the parser finds the functions
    assert long == [], long
