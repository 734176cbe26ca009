"""Reduction kernels (csrc/core/reduce.c) and copies (csrc/core/copy.c): the standalone C check, and
every kernel path against NumPy.

Paths the CPU lacks are skipped (rr_test_reduce answers RR_ERR_UNSUPPORTED for them)."""

from __future__ import annotations

import functools
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
CSRC = ROOT / "csrc"
PATHS = ["scalar", "avx2", "avx512"]

try:
    import ml_dtypes
except ImportError:  # pragma: no cover - ml_dtypes is optional
    ml_dtypes = None

# name: (rr_dtype value, numpy dtype or None when unavailable)
DTYPES = {
    "uint8": (0, np.dtype(np.uint8)),
    "int8": (1, np.dtype(np.int8)),
    "int16": (2, np.dtype(np.int16)),
    "int32": (3, np.dtype(np.int32)),
    "int64": (4, np.dtype(np.int64)),
    "float16": (5, np.dtype(np.float16)),
    "bfloat16": (6, np.dtype(ml_dtypes.bfloat16) if ml_dtypes is not None else None),
    "float32": (7, np.dtype(np.float32)),
    "float64": (8, np.dtype(np.float64)),
}
OPS = {"sum": 0, "min": 1, "max": 2, "prod": 3}
NP_OPS = {"sum": np.add, "min": np.minimum, "max": np.maximum, "prod": np.multiply}
RR_OK, RR_ERR_INVALID, RR_ERR_UNSUPPORTED = 0, 1, 2
CANONICAL_NAN = {
    "float16": 0x7E00,
    "bfloat16": 0x7FC0,
    "float32": 0x7FC00000,
    "float64": 0x7FF8000000000000,
}
UINT = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


def test_kernel_check_c(tmp_path):
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc not found")
    exe = tmp_path / "kernel_check"
    cmd = [
        gcc,
        "-std=c11",
        "-O2",
        "-Wall",
        "-Wextra",
        "-Werror",
        f"-I{CSRC}",
        str(CSRC / "core" / "reduce.c"),
        str(CSRC / "core" / "copy.c"),
        str(CSRC / "tests" / "kernel_check.c"),
        "-o",
        str(exe),
        "-lm",
    ]
    build = subprocess.run(cmd, capture_output=True, text=True)
    assert build.returncode == 0, build.stdout + build.stderr
    res = subprocess.run([str(exe)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "kernel_check: OK" in res.stdout, res.stdout


# ---------------------------------------------------------------------------------------------
# Through the built extension.


@pytest.fixture(scope="module")
def clib():
    mod = pytest.importorskip("ringred._lib")
    return mod.ffi, mod.lib


def _dtype(name):
    code, dt = DTYPES[name]
    if dt is None:
        pytest.skip("ml_dtypes not installed")
    return code, dt


def _need_path(clib, path):
    ffi, lib = clib
    rc = lib.rr_test_reduce(path.encode(), ffi.NULL, ffi.NULL, 1, 0, 7, 0)
    if rc == RR_ERR_UNSUPPORTED:
        pytest.skip(f"kernel path {path} not supported by this CPU")
    assert rc == RR_OK


def _is_float(dt):
    return dt.kind == "f" or dt == DTYPES["bfloat16"][1]


def _f32(a):
    return a.astype(np.float32) if a.dtype.itemsize == 2 and _is_float(a.dtype) else a


def _bits(a):
    return a.view(UINT[a.dtype.itemsize])


def _data(rng, dt, n):
    if not _is_float(dt):
        info = np.iinfo(dt)
        a = rng.integers(info.min, info.max, size=n, endpoint=True, dtype=dt)
        low = -1 if info.min < 0 else 2
        ext = np.array([info.min, info.max, 0, 1, low, info.min + 1], dtype=dt)
        small = rng.integers(-3 if info.min < 0 else 0, 4, size=n).astype(dt)
        a = np.where(rng.random(n) < 0.3, small, a)
    else:
        big = 60000.0 if dt == np.float16 else 1e30
        a = rng.standard_normal(n) * rng.choice([1e-3, 1.0, 100.0, big], size=n)
        with np.errstate(all="ignore"):
            a = a.astype(np.float32).astype(dt)
        finfo = ml_dtypes.finfo if dt == DTYPES["bfloat16"][1] else np.finfo
        tiny = finfo(dt).smallest_subnormal
        ext = np.array([np.nan, -np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0], np.float32)
        ext = ext.astype(dt)
        ext = np.concatenate([ext, np.array([tiny, -tiny, tiny * 3], dtype=dt)])
    mask = rng.random(n) < 0.15
    a[mask] = rng.choice(ext, size=int(mask.sum()))
    return np.ascontiguousarray(a)


def _reduce(clib, path, arrs, dt_code, op_code, out=None):
    ffi, lib = clib
    out = np.empty_like(arrs[0]) if out is None else out
    ptrs = ffi.new("const void *[]", [ffi.cast("const void *", a.ctypes.data) for a in arrs])
    rc = lib.rr_test_reduce(
        path.encode(),
        ffi.cast("void *", out.ctypes.data),
        ptrs,
        len(arrs),
        out.size,
        dt_code,
        op_code,
    )
    assert rc == RR_OK
    return out


def _reference(arrs, opname):
    xs = [_f32(a) for a in arrs]
    with np.errstate(all="ignore"):
        r = functools.reduce(NP_OPS[opname], xs) if len(xs) > 1 else xs[0].copy()
        return r.astype(arrs[0].dtype)


def _check_float(got, want, arrs, name, opname):
    g, w = _f32(got), _f32(want)
    gn, wn = np.isnan(g), np.isnan(w)
    np.testing.assert_array_equal(gn, wn, err_msg="NaN positions differ")
    ok = ~gn
    if opname in ("min", "max"):
        np.testing.assert_array_equal(g[ok], w[ok])  # NumPy leaves the sign of a zero tie open
        if len(arrs) > 1:
            assert (_bits(got)[gn] == CANONICAL_NAN[name]).all(), "min/max NaN not canonical"
            xs = [_f32(a) for a in arrs]
            zero = ok & (g == 0)
            if opname == "min":  # -0 if any input is -0
                want_neg = functools.reduce(np.logical_or, [(x == 0) & np.signbit(x) for x in xs])
            else:  # +0 if any input is +0
                want_neg = ~functools.reduce(np.logical_or, [(x == 0) & ~np.signbit(x) for x in xs])
            np.testing.assert_array_equal(np.signbit(g)[zero], want_neg[zero], err_msg="zero sign")
    else:
        np.testing.assert_array_equal(_bits(got)[ok], _bits(want)[ok])


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("opname", list(OPS))
@pytest.mark.parametrize("name", list(DTYPES))
def test_reduce_vs_numpy(clib, path, name, opname):
    _need_path(clib, path)
    code, dt = _dtype(name)
    rng = np.random.default_rng([code, OPS[opname], PATHS.index(path)])
    for n in (0, 13, 1037):
        for k in (1, 2, 3, 5):
            arrs = [_data(rng, dt, n) for _ in range(k)]
            got = _reduce(clib, path, arrs, code, OPS[opname])
            want = _reference(arrs, opname)
            if _is_float(dt):
                _check_float(got, want, arrs, name, opname)
            else:
                np.testing.assert_array_equal(got, want)
            # dst aliasing srcs[0]
            first = arrs[0].copy()
            inplace = _reduce(clib, path, [first] + arrs[1:], code, OPS[opname], out=first)
            same = (_bits(inplace) == _bits(got)) | (
                np.isnan(_f32(got)) & np.isnan(_f32(inplace)) if _is_float(dt) else False
            )
            assert same.all(), "in-place result differs"
            if k == 2 and n:  # symmetric, bit for bit (sum/prod: NaN payloads may differ)
                swapped = _reduce(clib, path, arrs[::-1], code, OPS[opname])
                if _is_float(dt) and opname in ("sum", "prod"):
                    _check_float(swapped, got, arrs, name, opname)
                else:
                    np.testing.assert_array_equal(_bits(swapped), _bits(got))


def _scale(clib, path, src, dt_code, factor, divisor, out=None):
    ffi, lib = clib
    out = np.empty_like(src) if out is None else out
    rc = lib.rr_test_scale(
        path.encode(),
        ffi.cast("void *", out.ctypes.data),
        ffi.cast("const void *", src.ctypes.data),
        src.size,
        dt_code,
        factor,
        divisor,
    )
    assert rc == RR_OK
    return out


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("name", list(DTYPES))
def test_scale_vs_numpy(clib, path, name):
    _need_path(clib, path)
    code, dt = _dtype(name)
    rng = np.random.default_rng([code, 99, PATHS.index(path)])
    for n in (0, 1, 13, 1037):
        src = _data(rng, dt, n)
        if _is_float(dt):
            for factor in (0.125, 1.0 / 3.0, -2.5, 1e-3, 1.0):
                got = _scale(clib, path, src, code, factor, 1)
                with np.errstate(all="ignore"):
                    if dt == np.float64:
                        want = src * factor
                    else:
                        want = (_f32(src) * np.float32(factor)).astype(dt)
                _check_float(got, want, [src], name, "prod")
                inplace = _scale(clib, path, src.copy(), code, factor, 1)
                _check_float(inplace, got, [src], name, "prod")
        else:
            for d in (1, 2, 3, -1, -7, 1000, 1 << 40):
                got = _scale(clib, path, src, code, 1.0, d)
                a = src.astype(np.int64)
                with np.errstate(all="ignore"):
                    if d == -1:
                        q = np.negative(a)
                    else:
                        q = a // d
                        q = q + ((q * d != a) & ((a < 0) != (d < 0)))  # floor -> truncation
                np.testing.assert_array_equal(got, q.astype(dt), err_msg=f"divisor {d}")
                buf = src.copy()
                _scale(clib, path, buf, code, 1.0, d, out=buf)
                np.testing.assert_array_equal(buf, got)


def test_path_selection_and_errors(clib):
    ffi, lib = clib
    before = ffi.string(lib.rr_kernel_path()).decode()
    assert before in PATHS
    try:
        assert lib.rr_set_kernel_path(b"scalar") == RR_OK
        assert ffi.string(lib.rr_kernel_path()) == b"scalar"
        assert lib.rr_set_kernel_path(b"auto") == RR_OK
        assert ffi.string(lib.rr_kernel_path()).decode() in PATHS
        assert lib.rr_set_kernel_path(b"sse9") == RR_ERR_UNSUPPORTED
    finally:
        assert lib.rr_set_kernel_path(before.encode()) == RR_OK
    for path in PATHS:
        rc = lib.rr_test_reduce(path.encode(), ffi.NULL, ffi.NULL, 1, 0, 7, 0)
        assert rc in (RR_OK, RR_ERR_UNSUPPORTED)
        assert (rc == RR_OK) == (lib.rr_set_kernel_path(path.encode()) == RR_OK)
    assert lib.rr_set_kernel_path(before.encode()) == RR_OK
    assert lib.rr_test_reduce(b"nope", ffi.NULL, ffi.NULL, 1, 0, 7, 0) == RR_ERR_UNSUPPORTED
    assert lib.rr_test_reduce(b"scalar", ffi.NULL, ffi.NULL, 1, 0, 9, 0) == RR_ERR_INVALID
    assert lib.rr_test_reduce(b"scalar", ffi.NULL, ffi.NULL, 1, 0, 7, 4) == RR_ERR_INVALID
    assert lib.rr_test_reduce(b"scalar", ffi.NULL, ffi.NULL, 0, 0, 7, 0) == RR_ERR_INVALID
    assert lib.rr_test_scale(b"scalar", ffi.NULL, ffi.NULL, 0, -1, 1.0, 1) == RR_ERR_INVALID
    assert lib.rr_test_scale(b"scalar", ffi.NULL, ffi.NULL, 0, 3, 1.0, 0) == RR_ERR_INVALID
    assert [lib.rr_dtype_size(i) for i in range(10)] == [1, 1, 2, 4, 8, 2, 2, 4, 8, 0]
