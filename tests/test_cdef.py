"""The cffi cdef in ringred_build.py must declare exactly what csrc/ringred.h declares."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _prototypes(text: str) -> dict[str, str]:
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r"#.*", "", text)
    out = {}
    for m in re.finditer(r"([A-Za-z_][\w\s\*]*?\b(rr_\w+))\s*\(([^;{]*?)\)\s*;", text):
        name = m.group(2)
        sig = " ".join((m.group(1) + "(" + m.group(3) + ")").split())
        sig = re.sub(r"\s*([(),*])\s*", r"\1", sig)
        out[name] = sig
    return out


def _constants(text: str) -> set[str]:
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    names = set(re.findall(r"\b(RR_[A-Z0-9_]+)\s*=", text))
    names |= set(re.findall(r"#define\s+(RR_[A-Z0-9_]+)\s+\d", text))
    return names


def test_cdef_matches_header():
    # Read CDEF without running the build: take the string literal from the source.
    src = (ROOT / "ringred_build.py").read_text()
    cdef = re.search(r'CDEF = """(.*?)"""', src, re.S).group(1)
    header = (ROOT / "csrc" / "ringred.h").read_text()
    hp, cp = _prototypes(header), _prototypes(cdef)
    # the parser must see the API at all (an empty match would make the comparison vacuous)
    for name in ("rr_allreduce", "rr_comm_last_error", "rr_strerror"):
        assert name in hp, (name, sorted(hp))
    assert len(hp) >= 40, sorted(hp)
    assert hp.keys() == cp.keys(), (sorted(hp.keys() - cp.keys()), sorted(cp.keys() - hp.keys()))
    for name in hp:
        assert hp[name] == cp[name], (name, hp[name], cp[name])
    consts = set(re.findall(r"#define\s+(RR_[A-Z0-9_]+)\s+\.\.\.", cdef))
    assert {"RR_FLOAT32", "RR_ERR_MISMATCH"} <= consts, sorted(consts)
    assert _constants(header) == consts, (_constants(header) ^ consts)


def test_constants_agree_with_python():
    import numpy as np

    from ringred._arrays import _CODES
    from ringred._lib import lib

    assert _CODES[np.dtype(np.float32)] == lib.RR_FLOAT32
    assert _CODES[np.dtype(np.int64)] == lib.RR_INT64
    assert _CODES[np.dtype(np.uint8)] == lib.RR_UINT8
    from ringred._lib import DType, Status, error_for
    from ringred.errors import BY_STATUS, MismatchError

    assert type(error_for(lib.RR_ERR_MISMATCH, "m")) is MismatchError
    assert DType.BFLOAT16 == lib.RR_BFLOAT16 and Status.ERR_STALL == lib.RR_ERR_STALL
    # every error status of the header maps to an exception, and only those
    errors = {n for n in dir(lib) if n.startswith("RR_ERR_")}
    assert {"RR_" + n for n in BY_STATUS} == errors, errors ^ {"RR_" + n for n in BY_STATUS}
