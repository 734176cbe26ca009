"""The one settings table (csrc/core/settings_table.c): its rows, the values in force and the
warnings about invalid ones, ``python -m ringred.info``, docs/settings.md, and the one version
source.  Single process, except the ``python -m ringred.info`` runs."""

from __future__ import annotations

import math
import re
import subprocess
import sys
import warnings

import pytest

import ringred.settings
from ringred import info

from .mpi import ROOT, worker_env

# RINGRED_* names the code reads that are no user setting: test hooks and build switches
NOT_SETTINGS = {"RINGRED_TEST_FAULT", "RINGRED_TEST_PLANT", "RINGRED_TEST_CASES",
                "RINGRED_FAKE_CUDA_AWARE", "RINGRED_DEVICE_BACKEND", "RINGRED_SANITIZE",
                "RINGRED_DEBUG", "RINGRED_WERROR"}


@pytest.fixture
def clean_env(monkeypatch):
    """No RINGRED_* variable from the outside world."""
    import os

    for k in list(os.environ):
        if k.startswith("RINGRED_"):
            monkeypatch.delenv(k)
    return monkeypatch


def test_table_rows_are_sane(clean_env):
    rows = info.settings()
    names = [s.name for s in rows]
    assert len(names) >= 30 and len(set(names)) == len(names), names
    for s in rows:
        assert s.name.startswith("RINGRED_") and s.help and s.group in info.GROUPS, s
        v = info.value(s.name)
        assert v.state == "default" and v.message == "" and v.raw == "", (s, v)
        if s.kind in ("size", "number", "count"):
            x = float(v.text)
            assert s.min <= x <= s.max and s.min >= 0, (s, v)
            assert float(s.default) == x, (s, v)
        elif s.kind == "choice":
            assert s.default in s.choices and v.text == s.default, (s, v)
        else:
            assert v.text == s.default, (s, v)


def _names_read_by_code() -> set[str]:
    found: set[str] = set()
    core = [f for f in (ROOT / "csrc").rglob("*.[ch]") if f.parent.name != "tests"]
    files = [*core, *(ROOT / "ringred").rglob("*.py")]
    for f in files:
        text = f.read_text(errors="replace")
        found |= set(re.findall(r"\bRINGRED_[A-Z0-9_]*[A-Z0-9]\b", text))
    return found - NOT_SETTINGS - {"RINGRED_H"}  # the header's include guard


def test_every_variable_the_code_reads_is_in_the_table():
    table = {s.name for s in info.settings()} | {s.alias for s in info.settings() if s.alias}
    read = _names_read_by_code()
    assert {"RINGRED_WINDOW", "RINGRED_FUSION_THRESHOLD", "RINGRED_LOG"} <= read, read
    missing = read - table
    assert not missing, f"RINGRED_* names in csrc/ or ringred/ missing from the table: {missing}"


@pytest.mark.parametrize("name,raw,text,state", [
    ("RINGRED_SEGMENT_BYTES", "1", "4096", "clamped"),
    ("RINGRED_SEGMENT_BYTES", "1g", "67108864", "clamped"),
    ("RINGRED_SEGMENT_BYTES", "64k", "65536", "set"),
    ("RINGRED_SEGMENT_BYTES", " 1MiB ", "1048576", "set"),
    ("RINGRED_SEGMENT_BYTES", "12 MB/s", "262144", "rejected"),
    ("RINGRED_WINDOW", "abc", "3", "rejected"),
    ("RINGRED_WINDOW", "5", "5", "set"),
    ("RINGRED_WINDOW", "99", "16", "clamped"),
    ("RINGRED_WINDOW", "4k", "3", "rejected"),  # a count takes no byte suffix
    ("RINGRED_CACHE_CAPACITY", "2e6", "1000000", "clamped"),
    ("RINGRED_CACHE_CAPACITY", "-1", "1024", "rejected"),
    ("RINGRED_STALL_CHECK_SECONDS", "2.5", "2.5", "set"),
    ("RINGRED_STALL_CHECK_SECONDS", "nan", "60", "rejected"),
    ("RINGRED_TRANSPORT", "SHM", "shm", "set"),
    ("RINGRED_TRANSPORT", "tcp", "auto", "rejected"),
    ("RINGRED_CUDA_AWARE", "yes", "yes", "set"),
    ("RINGRED_DEVICE_PACK", "copy", "kernel", "rejected"),
    ("RINGRED_TIMELINE", "/tmp/t.json", "/tmp/t.json", "set"),
    ("RINGRED_SHM_ARENA_BYTES", "0", "0", "set"),
])
def test_value_in_force(clean_env, name, raw, text, state):
    clean_env.setenv(name, raw)
    v = info.value(name)
    assert (v.text, v.state, v.raw) == (text, state, raw), v
    if state in ("clamped", "rejected"):
        assert v.message.startswith(f"{name}={raw}"), v.message
        assert text in v.message or "cannot start" in v.message, v.message
    else:
        assert v.message == "", v.message


def test_older_alias(clean_env):
    clean_env.setenv("RINGRED_SHM_TIMEOUT_SECONDS", "7")
    assert info.value("RINGRED_TIMEOUT_SECONDS").text == "7"
    clean_env.setenv("RINGRED_TIMEOUT_SECONDS", "9")  # the new name wins
    assert info.value("RINGRED_TIMEOUT_SECONDS").text == "9"
    assert info.value("RINGRED_SHM_TIMEOUT_SECONDS").text == "9"  # one setting


def test_unknown_name():
    with pytest.raises(KeyError):
        info.value("RINGRED_NO_SUCH_THING")


def test_kernel_path_this_cpu_lacks(clean_env):
    from ringred._lib import cstr, lib

    for path in ("scalar", "avx2", "avx512"):
        clean_env.setenv("RINGRED_KERNEL_PATH", path.upper())
        v = info.value("RINGRED_KERNEL_PATH")
        supported = lib.rr_set_kernel_path(path.encode()) == 0
        assert (v.state, v.text) == (("set", path) if supported else ("rejected", "auto")), v
    lib.rr_set_kernel_path(b"auto")
    assert cstr(lib.rr_kernel_path())


def test_warns_once_per_value(clean_env):
    clean_env.setattr(ringred.settings, "_warned", set())
    clean_env.setenv("RINGRED_SEGMENT_BYTES", "1")
    clean_env.setenv("RINGRED_WINDOW", "abc")
    with pytest.warns(RuntimeWarning) as rec:
        msgs = info.warn_invalid_settings()
    text = "\n".join(str(w.message) for w in rec)
    assert len(msgs) == 2 and "RINGRED_SEGMENT_BYTES=1" in text and "4096" in text, text
    assert "RINGRED_WINDOW=abc" in text and "default 3" in text, text
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert info.warn_invalid_settings() == []  # the same values: no second warning
    clean_env.setenv("RINGRED_WINDOW", "xyz")
    with pytest.warns(RuntimeWarning, match="RINGRED_WINDOW=xyz"):
        assert len(info.warn_invalid_settings()) == 1


def test_rank0_settings_warn_on_rank_0_only(clean_env):
    """Another rank's own value of a rank-0 setting is not the one used: no warning there."""
    clean_env.setattr(ringred.settings, "_warned", set())
    clean_env.setenv("RINGRED_SEGMENT_BYTES", "1")  # rank 0's value is used
    clean_env.setenv("RINGRED_WINDOW", "abc")  # each rank's own
    assert info.settings()[[s.name for s in info.settings()].index(
        "RINGRED_SEGMENT_BYTES")].scope == "rank 0's"
    with pytest.warns(RuntimeWarning) as rec:
        msgs = info.warn_invalid_settings(rank=1)
    assert len(msgs) == 1 and "RINGRED_WINDOW=abc" in msgs[0], [str(w.message) for w in rec]
    with pytest.warns(RuntimeWarning, match="RINGRED_SEGMENT_BYTES=1"):
        assert len(info.warn_invalid_settings(rank=0)) == 1


def _info(*args: str, **env: str) -> subprocess.CompletedProcess:
    e = worker_env(**env)
    for k in [k for k in e if k.startswith("RINGRED_") and k not in env]:
        del e[k]
    return subprocess.run([sys.executable, "-m", "ringred.info", *args], cwd=ROOT, env=e,
                          capture_output=True, text=True, timeout=120)


def test_ringred_info_shows_values_in_force_and_warns():
    res = _info(RINGRED_SEGMENT_BYTES="1", RINGRED_WINDOW="abc")
    assert res.returncode == 0, res.stderr
    lines = {ln.split()[0]: ln for ln in res.stdout.splitlines() if ln.startswith("RINGRED_")}
    assert re.match(r"RINGRED_SEGMENT_BYTES\s+4096 \(CLAMPED: '1' given\)",
                    lines["RINGRED_SEGMENT_BYTES"]), lines["RINGRED_SEGMENT_BYTES"]
    assert re.match(r"RINGRED_WINDOW\s+3 \(REJECTED: 'abc' given\)", lines["RINGRED_WINDOW"])
    assert re.match(r"RINGRED_SMALL_BYTES\s+65536 \(default\)", lines["RINGRED_SMALL_BYTES"])
    # the engine and device settings are there too, every row of the table
    assert set(lines) == {s.name for s in info.settings()}, set(lines)
    assert "RuntimeWarning: ringred: RINGRED_SEGMENT_BYTES=1 is below the minimum: 4096 is " \
           "used" in res.stderr, res.stderr
    assert "RINGRED_WINDOW=abc is not a number: the default 3 is used" in res.stderr


def test_init_warns():
    code = ("import warnings, ringred\nwarnings.simplefilter('always')\n"
            "with warnings.catch_warnings(record=True) as w:\n    ringred.init()\n"
            "print('WARN', [str(x.message) for x in w])\nringred.shutdown()\n")
    e = worker_env(RINGRED_WINDOW="abc")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=e, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "RINGRED_WINDOW=abc is not a number" in res.stdout, res.stdout


# ---------------------------------------------------------------- docs

BEGIN = "<!-- settings: generated by `python -m ringred.info --markdown`; do not edit by hand -->\n"
END = "<!-- settings: end of generated tables -->"


def test_docs_settings_md_is_generated_from_the_table():
    doc = (ROOT / "docs" / "settings.md").read_text()
    assert BEGIN in doc and END in doc
    section = doc[doc.index(BEGIN) + len(BEGIN):doc.index(END)]
    assert section == info.markdown(), (
        "docs/settings.md is out of date: paste `python -m ringred.info --markdown` between "
        "its markers")


_UNITS = {"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "k": 1 << 10, "m": 1 << 20,
          "g": 1 << 30}


def _doc_default(text: str) -> float | str:
    text = re.sub(r"\(.*?\)", "", text).strip()
    m = re.fullmatch(r"([\d.]+)\s*(KiB|MiB|GiB|k|m|g)?", text)
    if m:
        return float(m.group(1)) * _UNITS.get(m.group(2) or "", 1)
    return text.strip("`").lower()


def test_other_docs_agree_with_the_table():
    """Tables elsewhere in docs/ that give a setting's default give the table's."""
    table = {s.name: s for s in info.settings()}
    checked = 0
    for f in (ROOT / "docs").glob("*.md"):
        if f.name == "settings.md":
            continue
        for m in re.finditer(r"^\| `(RINGRED_\w+)` \| ([^|]*) \|", f.read_text(), re.M):
            s = table.get(m.group(1))
            if s is None:
                assert m.group(1) in NOT_SETTINGS, (f.name, m.group(0))
                continue
            want: float | str = (float(s.default) if s.kind in ("size", "number", "count")
                                 else s.default or "unset")
            got = _doc_default(m.group(2))
            assert got == want or (want == "unset" and got in ("off", "unset")), (
                f.name, m.group(0), want)
            checked += 1
    assert checked >= 5, checked


# ---------------------------------------------------------------- version

def test_one_version_source():
    import tomllib

    import ringred
    from ringred._lib import lib

    c = f"{lib.RR_VERSION_MAJOR}.{lib.RR_VERSION_MINOR}.{lib.RR_VERSION_PATCH}"
    assert c == ringred.__version__, (c, ringred.__version__)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"]["attr"] == "ringred.__version__"
    assert not math.isnan(float(lib.RR_VERSION_MAJOR))


@pytest.mark.parametrize("raw,limit", [("-5", 1 << 30), ("2M", 1 << 30), ("0", 0),
                                       ("4096", 4096)])
def test_python_read_settings_follow_the_table(monkeypatch, raw, limit):
    """The settings that Python reads (the result pool's) take the table's value in force:
    an invalid value means the default, exactly as ``python -m ringred.info`` shows it."""
    from ringred._pool import ResultPool
    from ringred.settings import value

    monkeypatch.setenv("RINGRED_RESULT_POOL_BYTES", raw)
    assert ResultPool().limit == limit == int(value("RINGRED_RESULT_POOL_BYTES").text)
