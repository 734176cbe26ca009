"""The device reduction kernel (csrc/device/dev_kernel_src.h): its host C instantiation against the
CPU kernels, bit for bit, and the committed PTX (csrc/device/dev_kernel_ptx.c) against the source.

The reference is the host shm path's per-element rule built from the CPU kernel hooks:
prescale every input (rr_test_scale), fold them in rank order (rr_test_reduce), postscale
(rr_test_scale), each with the "scalar" path and with the dispatched ("auto") one.  Only the
NaN payloads of sum/prod may differ (IEEE leaves them to the hardware): there a NaN only has
to meet a NaN."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ringred._lib import ffi, lib

ROOT = Path(__file__).resolve().parents[1]
CSRC = ROOT / "csrc"
DEVICE = CSRC / "device"
GEN_PTX = DEVICE / "gen_ptx.py"
PTX_C = DEVICE / "dev_kernel_ptx.c"

sys.path.insert(0, str(DEVICE))
import gen_ptx  # noqa: E402  (csrc/device/ is not a package)

sys.path.remove(str(DEVICE))

RR_OK, RR_ERR_INVALID, RR_ERR_UNSUPPORTED = 0, 1, 2
# name: (rr_dtype, element bytes, floating)
DTYPES = {
    "uint8": (0, 1, False),
    "int8": (1, 1, False),
    "int16": (2, 2, False),
    "int32": (3, 4, False),
    "int64": (4, 8, False),
    "float16": (5, 2, True),
    "bfloat16": (6, 2, True),
    "float32": (7, 4, True),
    "float64": (8, 8, True),
}
OPS = {"sum": 0, "min": 1, "max": 2, "prod": 3}
UINT = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}
# |bits| above this: NaN
NAN_ABOVE = {"float16": 0x7C00, "bfloat16": 0x7F80, "float32": 0x7F800000,
             "float64": 0x7FF0000000000000}
ABS_MASK = {"float16": 0x7FFF, "bfloat16": 0x7FFF, "float32": 0x7FFFFFFF,
            "float64": 0x7FFFFFFFFFFFFFFF}
# raw bit patterns worth meeting: zeros, infinities, quiet/signalling NaNs with payloads,
# subnormal extremes, the normal boundary, the largest finite values, ones and rounding ties
SPECIAL_BITS = {
    "float16": [0x0000, 0x8000, 0x7C00, 0xFC00, 0x7E00, 0xFE00, 0x7C01, 0x7D55, 0xFEAB, 0x0001,
                0x8001, 0x03FF, 0x83FF, 0x0400, 0x8400, 0x7BFF, 0xFBFF, 0x7BFE, 0x3C00, 0xBC00,
                0x4C00, 0x4800, 0x5BFF, 0x1400, 0x0200, 0x3C01],
    "bfloat16": [0x0000, 0x8000, 0x7F80, 0xFF80, 0x7FC0, 0xFFC0, 0x7F81, 0x7FA5, 0x0001, 0x8001,
                 0x007F, 0x0080, 0x7F7F, 0xFF7F, 0x3F80, 0xBF80, 0x3B80, 0x3C00, 0x3F81,
                 0x4380, 0x3F7F],
    "float32": [0x00000000, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00000, 0xFFC00000,
                0x7F800001, 0x7FA00005, 0x00000001, 0x80000001, 0x007FFFFF, 0x00800000,
                0x7F7FFFFF, 0xFF7FFFFF, 0x3F800000, 0xBF800000, 0x33800000, 0x3F800001,
                0x477FE000, 0x477FF000, 0x387FC000, 0x33000000],
    "float64": [0, 1 << 63, 0x7FF0000000000000, 0xFFF0000000000000, 0x7FF8000000000000,
                0xFFF8000000000000, 0x7FF0000000000001, 0x7FF4000000000123, 1, (1 << 63) | 1,
                0x000FFFFFFFFFFFFF, 0x0010000000000000, 0x7FEFFFFFFFFFFFFF, 0xFFEFFFFFFFFFFFFF,
                0x3FF0000000000000, 0xBFF0000000000000, 0x3CA0000000000000,
                0x3FF0000000000001],
}
NSRCS = [1, 2, 3, 5, 8]
N = 203  # not a multiple of any chunk: head, 16-byte chunks and tail all run
# (prescale, postscale, divisor) per kind of dtype; Average: float post = 1/n, integer div = n
FLOAT_SCALES = [(1.0, 1.0, 1), (0.5, 1.0, 1), (1.0, 1 / 3, 1), (0.5, 1 / 3, 1), ("avg", None, 1),
                (1.0, 1.0, 3)]
INT_SCALES = [(1.0, 1.0, 1), (1.0, 1.0, "avg"), (1.0, 1.0, 7)]
LAYOUTS = ["aligned", "shifted", "mixed"]


def _data(rng: np.random.Generator, name: str, n: int) -> np.ndarray:
    """n elements of dtype `name` as unsigned bit patterns."""
    _, es, flt = DTYPES[name]
    ut = UINT[es]
    if not flt:
        bits = rng.integers(0, 1 << (8 * es), size=n, dtype=np.uint64, endpoint=False)
        small = rng.integers(-3, 4, size=n).astype(np.int64).astype(np.uint64)
        top = np.uint64(1) << np.uint64(8 * es - 1)
        ext = np.array([0, 1, top - np.uint64(1), top, top + np.uint64(1), ~np.uint64(0)],
                       dtype=np.uint64)
        pick = rng.random(n)
        bits = np.where(pick < 0.3, small, bits)
        bits = np.where(pick > 0.85, rng.choice(ext, size=n), bits)
        return bits.astype(ut)
    # values of moderate size (sums stay finite), tiny ones, large ones, random bits, specials
    mag = rng.choice([1e-6, 1e-3, 1.0, 1.0, 100.0, 3e4], size=n)
    vals = rng.standard_normal(n) * mag
    ints = rng.integers(-4, 5, size=n).astype(np.float64)
    vals = np.where(rng.random(n) < 0.2, ints, vals)
    with np.errstate(all="ignore"):
        if name == "float16":
            bits = vals.astype(np.float16).view(np.uint16)
        elif name == "bfloat16":
            bits = (vals.astype(np.float32).view(np.uint32) >> np.uint32(16)).astype(np.uint16)
        elif name == "float32":
            bits = vals.astype(np.float32).view(np.uint32)
        else:
            bits = vals.view(np.uint64)
    bits = bits.astype(ut)
    rand = rng.integers(0, 1 << min(8 * es, 63), size=n, dtype=np.uint64).astype(ut)
    if es == 8:
        rand |= (rng.integers(0, 2, size=n, dtype=np.uint64) << np.uint64(63)).astype(ut)
    special = rng.choice(np.array(SPECIAL_BITS[name], dtype=np.uint64), size=n).astype(ut)
    pick = rng.random(n)
    bits = np.where(pick < 0.12, rand, bits)
    return np.where(pick > 0.8, special, bits).astype(ut)


def _buffer(nbytes: int, offset: int, keep: list) -> np.ndarray:
    """A uint8 array of nbytes whose address is `offset` past a multiple of 64."""
    raw = np.zeros(nbytes + 128, dtype=np.uint8)
    keep.append(raw)
    start = (-raw.ctypes.data) % 64 + offset
    return raw[start:start + nbytes]


def _placed(arr: np.ndarray, offset: int, keep: list) -> np.ndarray:
    buf = _buffer(arr.nbytes, offset, keep).view(arr.dtype)
    buf[:] = arr
    return buf


def _ptr(a: np.ndarray):
    return ffi.cast("void *", a.ctypes.data)


def _ptrs(arrs):
    return ffi.new("const void *[]", [ffi.cast("const void *", a.ctypes.data) for a in arrs])


def _reference(path: str, srcs, code: int, op: int, pre: float, post: float, div: int,
               flt: bool) -> np.ndarray:
    """The host shm path's rule through the CPU kernel hooks."""
    n = srcs[0].size
    ins = []
    for s in srcs:
        t = s.copy()
        if flt and pre != 1.0:
            assert lib.rr_test_scale(path.encode(), _ptr(t), _ptr(s), n, code, pre, 1) == RR_OK
        ins.append(t)
    out = np.empty_like(srcs[0])
    assert lib.rr_test_reduce(path.encode(), _ptr(out), _ptrs(ins), len(ins), n, code, op) == RR_OK
    if post != 1.0 or div != 1:
        assert lib.rr_test_scale(path.encode(), _ptr(out), _ptr(out), n, code, post, div) == RR_OK
    return out


def _kernel(dst, srcs, code, op, pre, post, div) -> int:
    return lib.rr_test_dev_kernel(_ptr(dst), _ptrs(srcs), len(srcs), dst.size, code, op, pre,
                                  post, div)


def _assert_same(name, opname, got, want, what):
    if opname in ("sum", "prod") and name in NAN_ABOVE:
        both_nan = ((got & ABS_MASK[name]) > NAN_ABOVE[name]) & (
            (want & ABS_MASK[name]) > NAN_ABOVE[name])
        got = np.where(both_nan, want, got)
    bad = np.flatnonzero(got != want)
    if bad.size:
        i = bad[0]
        pytest.fail(f"{what}: {bad.size} elements differ, first [{i}]: kernel {int(got[i]):#x}, "
                    f"CPU path {int(want[i]):#x}")


@pytest.mark.parametrize("opname", list(OPS))
@pytest.mark.parametrize("name", list(DTYPES))
def test_host_kernel_matches_cpu_path(name, opname):
    code, es, flt = DTYPES[name]
    op = OPS[opname]
    rng = np.random.default_rng([code, op])
    for nsrc in NSRCS:
        base = [_data(rng, name, N) for _ in range(nsrc)]
        for pre, post, div in FLOAT_SCALES if flt else INT_SCALES:
            if pre == "avg":
                pre, post = 1.0, 1.0 / nsrc
            if div == "avg":
                div = nsrc
            for path in ("scalar", "auto"):
                want = _reference(path, base, code, op, pre, post, div, flt)
                for layout in LAYOUTS:
                    keep: list = []
                    # shifted: every buffer one element past 64-byte alignment (same offset
                    # modulo 16: head, chunks, tail); mixed: offsets differ (per element only)
                    offs = {"aligned": [0] * (nsrc + 1), "shifted": [es] * (nsrc + 1),
                            "mixed": [(j % 2) * es for j in range(nsrc + 1)]}[layout]
                    srcs = [_placed(b, offs[j + 1], keep) for j, b in enumerate(base)]
                    dst = _buffer(N * es, offs[0], keep).view(UINT[es])
                    dst[:] = 0x5A
                    assert _kernel(dst, srcs, code, op, pre, post, div) == RR_OK
                    what = (f"{name} {opname} nsrc={nsrc} pre={pre} post={post} div={div} "
                            f"{layout} vs {path}")
                    _assert_same(name, opname, dst, want, what)


@pytest.mark.parametrize("name", list(DTYPES))
def test_host_kernel_in_place_and_sizes(name):
    """dst may be srcs[0]; every size from 0 to 40 (chunk boundaries of every width)."""
    code, es, flt = DTYPES[name]
    rng = np.random.default_rng(100 + code)
    for n in range(41):
        for off in (0, es):
            keep: list = []
            base = [_data(rng, name, n) for _ in range(3)]
            pre, post = (0.5, 1 / 3) if flt else (1.0, 1.0)
            div = 1 if flt else 3
            want = _reference("scalar", base, code, OPS["sum"], pre, post, div, flt)
            srcs = [_placed(b, off, keep) for b in base]
            assert _kernel(srcs[0], srcs, code, OPS["sum"], pre, post, div) == RR_OK
            _assert_same(name, "sum", srcs[0], want, f"{name} in place n={n} offset={off}")


def test_rounding_boundaries():
    """Hand-picked sums: float16 overflow at 65520 (ties to even), bfloat16 ties, subnormal
    results of float16 and float32 products (no flush to zero)."""
    cases = [
        ("float16", "sum", [0x7BFF, 0x4C00], 0x7C00),  # 65504 + 16 = 65520: tie, even is inf
        ("float16", "sum", [0x7BFF, 0x4800], 0x7BFF),  # 65504 + 8: below the tie
        ("float16", "sum", [0x0001, 0x0001], 0x0002),  # subnormals add exactly
        ("float16", "prod", [0x1400, 0x1400], 0x0010),  # 2^-10 * 2^-10 = 2^-20 = 16 * 2^-24
        ("bfloat16", "sum", [0x3F80, 0x3B80], 0x3F80),  # 1 + 2^-8: tie, even is 1
        ("bfloat16", "sum", [0x3F81, 0x3B80], 0x3F82),  # tie, even is up
        ("float32", "prod", [0x1E3CE508, 0x1E3CE508], None),  # 1e-20 squared: subnormal
    ]
    for name, opname, bits, expect in cases:
        code, es, _ = DTYPES[name]
        srcs = [np.full(N, b, dtype=UINT[es]) for b in bits]
        dst = np.zeros(N, dtype=UINT[es])
        assert _kernel(dst, srcs, code, OPS[opname], 1.0, 1.0, 1) == RR_OK
        want = _reference("scalar", srcs, code, OPS[opname], 1.0, 1.0, 1, True)
        _assert_same(name, opname, dst, want, f"{name} {opname} {bits}")
        if expect is not None:
            assert int(dst[0]) == expect, (name, opname, bits, hex(int(dst[0])))
        else:
            assert 0 < int(dst[0]) < 0x00800000, hex(int(dst[0]))


def test_min_max_nan_and_zero_rules():
    """Canonical quiet NaN from min/max of any NaN, min(+0,-0) = -0 and max = +0, either order;
    nsrc == 1 copies bits (a signalling NaN stays)."""
    for name, qnan, snan, pz, nz, one in [
        ("float16", 0x7E00, 0x7C01, 0x0000, 0x8000, 0x3C00),
        ("bfloat16", 0x7FC0, 0x7F81, 0x0000, 0x8000, 0x3F80),
        ("float32", 0x7FC00000, 0x7F800001, 0, 0x80000000, 0x3F800000),
        ("float64", 0x7FF8000000000000, 0x7FF0000000000001, 0, 1 << 63, 0x3FF0000000000000),
    ]:
        code, es, _ = DTYPES[name]
        ut = UINT[es]
        a = np.array([snan, one, pz, nz, snan | (1 << (8 * es - 1))] * 8, dtype=ut)
        b = np.array([one, snan, nz, pz, one] * 8, dtype=ut)
        for opname, zero in (("min", nz), ("max", pz)):
            dst = np.zeros_like(a)
            assert _kernel(dst, [a, b], code, OPS[opname], 1.0, 1.0, 1) == RR_OK
            assert list(dst[:5]) == [qnan, qnan, zero, zero, qnan], (name, opname, dst[:5])
        dst = np.zeros_like(a)
        assert _kernel(dst, [a], code, OPS["min"], 1.0, 1.0, 1) == RR_OK
        assert (dst == a).all(), name


def test_arguments():
    a = np.zeros(16, dtype=np.float32)
    srcs = _ptrs([a, a])
    p = _ptr(a)
    f = lib.rr_test_dev_kernel
    assert f(p, srcs, 2, 16, 7, 0, 1.0, 1.0, 1) == RR_OK
    assert f(ffi.NULL, ffi.NULL, 2, 0, 7, 0, 1.0, 1.0, 1) == RR_OK  # nothing to do
    assert f(p, srcs, 2, 16, 9, 0, 1.0, 1.0, 1) == RR_ERR_UNSUPPORTED
    assert f(p, srcs, 2, 16, -1, 0, 1.0, 1.0, 1) == RR_ERR_UNSUPPORTED
    assert f(p, srcs, 2, 16, 7, 4, 1.0, 1.0, 1) == RR_ERR_UNSUPPORTED
    assert f(p, _ptrs([a] * 9), 9, 16, 7, 0, 1.0, 1.0, 1) == RR_ERR_UNSUPPORTED
    assert f(p, srcs, 0, 16, 7, 0, 1.0, 1.0, 1) == RR_ERR_INVALID
    assert f(p, srcs, 2, 16, 7, 0, 1.0, 1.0, 0) == RR_ERR_INVALID
    assert f(p, srcs, 2, 16, 7, 0, float("inf"), 1.0, 1) == RR_ERR_INVALID
    assert f(p, srcs, 2, 16, 7, 0, 1.0, float("nan"), 1) == RR_ERR_INVALID
    assert f(p, srcs, 2, 16, 3, 0, 0.5, 1.0, 1) == RR_ERR_INVALID  # factors need floats
    assert f(ffi.NULL, srcs, 2, 16, 7, 0, 1.0, 1.0, 1) == RR_ERR_INVALID
    assert f(p, ffi.NULL, 2, 16, 7, 0, 1.0, 1.0, 1) == RR_ERR_INVALID
    one_null = ffi.new("const void *[]", [p, ffi.NULL])
    assert f(p, one_null, 2, 16, 7, 0, 1.0, 1.0, 1) == RR_ERR_INVALID
    odd = ffi.cast("void *", a.ctypes.data + 2)
    assert f(odd, srcs, 2, 8, 7, 0, 1.0, 1.0, 1) == RR_ERR_INVALID  # misaligned float32
    assert f(p, ffi.new("const void *[]", [p, odd]), 2, 8, 7, 0, 1.0, 1.0, 1) == RR_ERR_INVALID


def test_dev_kernel_check_c(tmp_path):
    """csrc/tests/dev_kernel_check.c without --gpu: the host build with a second output
    (dst[1], which rr_test_dev_kernel leaves unset) and in place, against the CPU path."""
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc not found")
    exe = tmp_path / "dev_kernel_check"
    srcs = ["core/reduce.c", "device/dev_kernel_host.c", "device/dev_kernel_ptx.c",
            "tests/dev_kernel_check.c"]
    cmd = [gcc, "-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", f"-I{CSRC}",
           *[str(CSRC / s) for s in srcs], "-o", str(exe), "-lm", "-ldl"]
    build = subprocess.run(cmd, capture_output=True, text=True)
    assert build.returncode == 0, build.stdout + build.stderr
    res = subprocess.run([str(exe)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "dev_kernel_check: OK" in res.stdout, res.stdout


# ---------------------------------------------------------------------------------------------
# The committed PTX.


def test_ptx_is_regenerated_from_source():
    """csrc/device/dev_kernel_ptx.c is what csrc/device/gen_ptx.py makes from the source with
    the pinned NVRTC (make test installs it)."""
    res = subprocess.run([sys.executable, str(GEN_PTX), "--check"], capture_output=True,
                         text=True, timeout=300)
    out = res.stdout + res.stderr
    if res.returncode == 2:
        pytest.fail(f"NVRTC is not usable, so the committed PTX cannot be checked: "
                    f"{gen_ptx.INSTALL_HINT}\n{out}")
    assert res.returncode == 0, out


def _ptx_text() -> tuple[str, str]:
    """(header comment, PTX) decoded from the C string literal of dev_kernel_ptx.c."""
    text = PTX_C.read_text()
    head = text[: text.index("*/")]
    lines = re.findall(r'^\s*"((?:[^"\\]|\\.)*)"', text, re.M)
    esc = {"n": "\n", "t": "\t"}
    return head, "".join(re.sub(r"\\(.)", lambda m: esc.get(m.group(1), m.group(1)), ln)
                         for ln in lines)


def test_committed_ptx_shape():
    head, ptx = _ptx_text()
    assert re.search(r"^\.version 8\.0$", ptx, re.M), "PTX ISA 8.0 expected"
    assert re.search(r"^\.target sm_70$", ptx, re.M), "target compute_70 (sm_70) expected"
    assert re.search(r"^\.visible \.entry rr_reduce_kernel\(", ptx, re.M)
    assert re.search(r"^\.visible \.entry rr_copy_kernel\(", ptx, re.M)
    assert not re.search(r"\bfma\.", ptx), "the kernel must not contract to FMA"
    assert "Cuda compilation tools, release 12.0" in ptx
    for bad in ("/work", "/home", "/tmp", "/root", "/usr"):
        assert bad not in ptx, bad
    assert "do not edit" in head
    assert f"{gen_ptx.NVRTC_PACKAGE}=={gen_ptx.NVRTC_PIN}" in head
    assert "PTX ISA 8.0" in head and "--fmad=false" in head


def test_launch_bounds_match_header():
    """The PTX's block-size bound is the RR_KMAX_THREADS that launchers read in dev_kernel.h."""
    _, ptx = _ptx_text()
    header = (DEVICE / "dev_kernel.h").read_text()
    limit = int(re.search(r"#define RR_KMAX_THREADS (\d+)", header).group(1))
    assert re.search(rf"^\.maxntid {limit}, 1, 1$", ptx, re.M), limit


def test_nvrtc_pin_matches_makefile():
    assert f'"{gen_ptx.NVRTC_PACKAGE}=={gen_ptx.NVRTC_PIN}"' in (ROOT / "Makefile").read_text()
