"""The only module that touches the cffi ``ffi`` and ``lib`` objects."""

from __future__ import annotations

from typing import Any

from .errors import error_for

try:
    from ._libmpi import load as _load

    _ext = _load()
    ffi, lib = _ext.ffi, _ext.lib
except ImportError as exc:  # pragma: no cover - exercised only on a broken install
    raise ImportError(
        "ringred's C extension is not built: install with `pip install .` (or `make test`), "
        f"which compiles csrc/ through cffi ({exc})"
    ) from exc

NULL = ffi.NULL


def check(status: int, comm: Any = None, what: str = "") -> None:
    """Raise the exception mapped from ``status`` unless it is RR_OK."""
    if status == 0:
        return
    raise make_error(status, comm, what)


def make_error(status: int, comm: Any = None, what: str = ""):
    detail = ""
    if comm is not None and comm != NULL:
        detail = ffi.string(lib.rr_comm_last_error(comm)).decode(errors="replace")
    if not detail:
        detail = ffi.string(lib.rr_strerror(status)).decode()
    if what:
        kind = what.split(" ", 1)[0] + ": "  # the C core names the collective too: once
        detail = f"{what}: {detail.removeprefix(kind)}"
    return error_for(status, detail)


def cstr(p: Any) -> str:
    """Decode a C string."""
    return ffi.string(p).decode(errors="replace")


__all__ = ["ffi", "lib", "NULL", "check", "make_error", "cstr"]
