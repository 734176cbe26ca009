"""No function of the C core (csrc/<layer>/*.c, outside csrc/tests and the generated PTX table) is
longer than 100 lines: long loops are split into named phases (issue 16)."""

from __future__ import annotations

import re
from pathlib import Path

CSRC = Path(__file__).resolve().parent.parent / "csrc"
LIMIT = 100
GENERATED = {"dev_kernel_ptx.c"}


def functions(text: str) -> list[tuple[str, int]]:
    """(name, length in lines) of every top-level function definition in C source ``text``:
    a '{' at column 0 whose head starts at the nearest line above it that starts at column 0
    (a head may wrap: its continuation lines are indented)."""
    lines = text.split("\n")
    out, i = [], 0
    while i < len(lines):
        if lines[i].startswith("{") and i > 0:
            k = i - 1
            while k > 0 and lines[k][:1] in (" ", "\t"):
                k -= 1
            head = " ".join(lines[k:i])
            if head.rstrip().endswith(")") and not head.lstrip().startswith(("#", "}")):
                names = re.findall(r"(\w+)\s*\(", head)
                j, depth = i, 0
                while j < len(lines):
                    depth += lines[j].count("{") - lines[j].count("}")
                    if depth == 0 and lines[j].startswith("}"):
                        break
                    j += 1
                out.append((names[0] if names else head, j - k + 1))
                i = j
        i += 1
    return out


def test_parser_measures_functions():
    src = "static int f(int a)\n{\n    if (a) {\n        return 1;\n    }\n    return 0;\n}\n"
    assert functions(src) == [("f", 7)]
    wrapped = "rr_status rr_g(int a,\n               int b)\n{\n    return a + b;\n}\n"
    assert functions(src + wrapped) == [("f", 7), ("rr_g", 5)]


def test_no_function_is_longer_than_the_limit():
    files = [f for f in sorted(CSRC.glob("*/*.c")) if f.parent.name != "tests"]
    long = [(f.name, name, n) for f in files if f.name not in GENERATED
            for name, n in functions(f.read_text()) if n > LIMIT]
    seen = sum(len(functions(f.read_text())) for f in files)
    assert seen > 300, seen  # the parser finds the functions
    assert long == [], long
