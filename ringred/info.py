"""``python -m ringred.info``: version, MPI library, build flags, CPU kernels, settings.

The settings come from the C core's one table (csrc/core/settings_table.c): each is shown with the
value in force here, as the core reads it, and marked when it was clamped into range or
rejected.  ``python -m ringred.info --markdown`` prints the settings tables of
docs/settings.md (tests/test_settings.py checks that the file is up to date).
"""

from __future__ import annotations

import math
import sys

from .settings import (  # noqa: F401 - re-exported: ringred.info.settings() & co.
    GROUPS,
    KINDS,
    SCOPES,
    STATES,
    Setting,
    Value,
    settings,
    value,
    warn_invalid_settings,
)


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
    from ringred._lib import cstr, rr_build_info, rr_kernel_path

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
        "build": cstr(rr_build_info()),
        "cpu kernels": cstr(rr_kernel_path()),
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
