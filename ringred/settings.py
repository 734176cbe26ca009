"""The C core's table of RINGRED_* settings (csrc/core/settings_table.c), seen from Python: every
setting's description, its value in force, and warnings about invalid values.

``python -m ringred.info`` prints them; docs/settings.md is generated from them."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

from ._lib import (
    NULL,
    READER_PYTHON,
    SETTING_STRICT,
    cstr,
    new,
    rr_setting_count,
    rr_setting_info,
    rr_setting_value,
)

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


def _s(p: Any) -> str:
    return cstr(p) if p != NULL else ""


def settings() -> list[Setting]:
    """Every RINGRED_* setting, in the C table's order."""
    out = []
    for i in range(rr_setting_count()):
        d = rr_setting_info(i)
        out.append(Setting(
            name=_s(d.name), alias=_s(d.alias) or None, group=_s(d.group),
            kind=KINDS[d.kind], scope=SCOPES[d.scope], python=d.reader == READER_PYTHON,
            strict=bool(d.flags & SETTING_STRICT), default=_s(d.dflt),
            min=d.min, max=d.max,
            choices=tuple(_s(d.choices).split("|")) if d.choices != NULL else (),
            help=_s(d.help)))
    return out


def value(name: str) -> Value:
    """The value in force of setting ``name`` (or its older alias), read from the environment
    now exactly as the C core reads it."""
    v = new("rr_setting_val *")
    if rr_setting_value(name.encode(), v) != 0:  # RR_OK
        raise KeyError(f"{name} is not a ringred setting")
    return Value(name=name, text=_s(v.text), state=STATES[v.state], raw=_s(v.raw),
                 message=_s(v.message))


_warned: set[tuple[str, str]] = set()


def warn_invalid_settings(rank: int = 0) -> list[str]:
    """Warn (``RuntimeWarning``, once per variable and value) about every RINGRED_* setting
    that was clamped into range or rejected; return the messages of this call's warnings.
    On a rank other than 0, settings whose value is rank 0's are left out: that rank's own
    value is not the one used.  ``ringred.init()`` and ``python -m ringred.info`` call it."""
    out = []
    for s in settings():
        if rank != 0 and s.scope == SCOPES[1]:  # rank 0's
            continue
        v = value(s.name)
        if v.state in ("clamped", "rejected") and (s.name, v.raw) not in _warned:
            _warned.add((s.name, v.raw))
            out.append(v.message)
            warnings.warn(f"ringred: {v.message}", RuntimeWarning, stacklevel=2)
    return out
