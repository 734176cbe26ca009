"""``python -m ringred.info``: version, MPI library, build flags, CPU kernels, settings.

The settings come from the C core's one table (csrc/settings_table.c): each is shown with the
value in force here, as the core reads it, and marked when it was clamped into range or
rejected.  ``python -m ringred.info --markdown`` prints the settings tables of
docs/settings.md (tests/test_settings.py checks that the file is up to date).
"""

from __future__ import annotations

import math
import sys
import warnings
from dataclasses import dataclass
from typing import Any

GROUPS = {
    "collectives": "Collectives",
    "shm": "Shared-memory transport",
    "engine": "Background engine",
    "device": "GPU buffers",
    "logging": "Logging",
}
STATES = ("default", "set", "clamped", "rejected")
KINDS = ("size", "number", "choice", "text", "count")
SCOPES = ("each rank's own", "rank 0's", "same on every rank")


@dataclass(frozen=True)
class Setting:
    """One row of the C core's settings table."""

    name: str
    alias: str | None
    group: str
    kind: str  # size, number, choice, text, count
    scope: str  # one of SCOPES
    python: bool  # read by ringred's Python side, not the C core
    strict: bool  # an invalid value is an error (init fails), not replaced by the default
    default: str
    min: float
    max: float
    choices: tuple[str, ...]
    help: str


@dataclass(frozen=True)
class Value:
    """A setting's value in force in this process."""

    name: str
    text: str  # the value in force
    state: str  # default, set, clamped, rejected
    raw: str  # the environment's string ("" when unset)
    message: str  # what was wrong and which value is used (clamped, rejected)


def _lib() -> tuple[Any, Any]:
    from ._lib import ffi, lib

    return ffi, lib


def _s(ffi: Any, p: Any) -> str:
    return ffi.string(p).decode(errors="replace") if p != ffi.NULL else ""


def settings() -> list[Setting]:
    """Every RINGRED_* setting, in the C table's order."""
    ffi, lib = _lib()
    out = []
    for i in range(lib.rr_setting_count()):
        d = lib.rr_setting_info(i)
        out.append(Setting(
            name=_s(ffi, d.name), alias=_s(ffi, d.alias) or None, group=_s(ffi, d.group),
            kind=KINDS[d.kind], scope=SCOPES[d.scope], python=d.reader == lib.RR_READER_PYTHON,
            strict=bool(d.flags & lib.RR_SETTING_STRICT), default=_s(ffi, d.dflt),
            min=d.min, max=d.max,
            choices=tuple(_s(ffi, d.choices).split("|")) if d.choices != ffi.NULL else (),
            help=_s(ffi, d.help)))
    return out


def value(name: str) -> Value:
    """The value in force of setting ``name`` (or its older alias), read from the environment
    now exactly as the C core reads it."""
    ffi, lib = _lib()
    v = ffi.new("rr_setting_val *")
    if lib.rr_setting_value(name.encode(), v) != lib.RR_OK:
        raise KeyError(f"{name} is not a ringred setting")
    return Value(name=name, text=_s(ffi, v.text), state=STATES[v.state], raw=_s(ffi, v.raw),
                 message=_s(ffi, v.message))


_warned: set[tuple[str, str]] = set()


def warn_invalid_settings() -> list[str]:
    """Warn (``RuntimeWarning``, once per variable and value) about every RINGRED_* setting
    that was clamped into range or rejected; return the messages of this call's warnings.
    ``ringred.init()`` and ``python -m ringred.info`` call it."""
    out = []
    for s in settings():
        v = value(s.name)
        if v.state in ("clamped", "rejected") and (s.name, v.raw) not in _warned:
            _warned.add((s.name, v.raw))
            out.append(v.message)
            warnings.warn(f"ringred: {v.message}", RuntimeWarning, stacklevel=2)
    return out


def _transport() -> str:
    """The transport ringred uses here (initializes ringred over COMM_WORLD if needed)."""
    import ringred
    from ringred import _state

    if _state.is_initialized():
        return _state.current().transport
    try:
        ringred.init()
    except ringred.RingredError as exc:
        return f"unavailable ({exc})"
    try:
        return _state.current().transport
    finally:
        ringred.shutdown()


def _cuda() -> str:
    """Whether the CUDA backend can run here, and which device transport a GPU job gets."""
    from ringred.device import backend_available

    ok, why = backend_available("cuda")
    if not ok:
        return f"not available ({why}); GPU arrays cannot be used"
    return ("available: same-host ranks use CUDA IPC (RINGRED_DEVICE_TRANSPORT), other "
            "ranks stage through pinned host memory; ringred.device.transport() tells "
            "after the first device allreduce")


def _shown(s: Setting, v: Value) -> str:
    """The value in force and where it came from, for one line of ringred.info."""
    text = v.text if v.text else "unset"
    if v.state == "default":
        return f"{text} (default)"
    if v.state == "set":
        return text
    if s.strict:
        return f"{v.raw!r} REJECTED: init() fails"
    return f"{text} ({v.state.upper()}: {v.raw!r} given)"


def describe() -> dict[str, str]:
    """The facts ``python -m ringred.info`` prints, as a dict."""
    from mpi4py import MPI

    import ringred
    from ringred._lib import cstr, lib

    facts = {
        "ringred": ringred.__version__,
        "python": sys.version.split()[0],
        "mpi4py": __import__("mpi4py").__version__,
        # Open MPI counts the terminating NUL in the length, and mpi4py keeps it
        "mpi library": MPI.Get_library_version().strip("\x00").splitlines()[0].strip(),
        "mpi thread level": {
            MPI.THREAD_SINGLE: "single", MPI.THREAD_FUNNELED: "funneled",
            MPI.THREAD_SERIALIZED: "serialized", MPI.THREAD_MULTIPLE: "multiple",
        }.get(MPI.Query_thread(), "?"),
        "build": cstr(lib.rr_build_info()),
        "cpu kernels": cstr(lib.rr_kernel_path()),
        "transport": _transport(),
        "gpu (cuda driver)": _cuda(),
    }
    for s in settings():
        scope = " [rank 0's value]" if s.scope == SCOPES[1] else ""
        facts[s.name] = f"{_shown(s, value(s.name))}{scope}  # {s.help}"
    return facts


# ---------------------------------------------------------------- docs/settings.md

def _bytes(x: float) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if x >= size and x % size == 0:
            return f"{int(x)} ({int(x) // size} {unit})"
    return f"{int(x)}"


def _number(x: float) -> str:
    return f"{x:.15g}"


def _default_md(s: Setting) -> str:
    if not s.default:
        return "unset"
    if s.kind == "size":
        return _bytes(float(s.default))
    return s.default


def _range_md(s: Setting) -> str:
    if s.kind == "choice":
        return ", ".join(f"`{c}`" for c in s.choices)
    if s.kind == "text":
        return "a path"
    fmt = _bytes if s.kind == "size" else _number
    hi = "no limit" if math.isinf(s.max) else fmt(s.max)
    return f"{fmt(s.min)} .. {hi}"


def markdown() -> str:
    """The settings tables of docs/settings.md, generated from the C table."""
    lines: list[str] = []
    rows = settings()
    for group, title in GROUPS.items():
        lines += [f"### {title}", "",
                  "| variable | default | range | scope | meaning |", "|---|---|---|---|---|"]
        for s in rows:
            if s.group != group:
                continue
            name = f"`{s.name}`" + (f" (older name: `{s.alias}`)" if s.alias else "")
            meaning = s.help.replace("|", "\\|") + (" (read by Python)" if s.python else "")
            lines.append(f"| {name} | {_default_md(s)} | {_range_md(s)} | {s.scope} | "
                         f"{meaning} |")
        lines.append("")
    missing = {s.group for s in rows} - set(GROUPS)
    if missing:  # a new group must get a title above
        raise ValueError(f"settings groups without a title in ringred/info.py: {missing}")
    return "\n".join(lines).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> None:
    """Print the facts, one per line (``--markdown``: the settings tables of the docs)."""
    args = sys.argv[1:] if argv is None else argv
    if args == ["--markdown"]:
        sys.stdout.write(markdown())
        return
    if args:
        raise SystemExit("usage: python -m ringred.info [--markdown]")
    warn_invalid_settings()
    facts = describe()
    width = max(len(k) for k in facts)
    for k, v in facts.items():
        print(f"{k:{width}s} {v}")


if __name__ == "__main__":
    main()
