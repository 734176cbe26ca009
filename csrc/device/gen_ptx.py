"""Compile ringred's device reduction kernel (csrc/device/dev_kernel_src.h) to PTX with NVRTC and
write csrc/device/dev_kernel_ptx.c, the PTX as a C string that the extension embeds.

    python csrc/device/gen_ptx.py           regenerate csrc/device/dev_kernel_ptx.c (also: make ptx)
    python csrc/device/gen_ptx.py --check   regenerate in memory; exit 1 with a short diff when
                                            the committed file differs

NVRTC comes from the PyPI wheel nvidia-cuda-nvrtc-cu12 at the exact version NVRTC_PIN (loaded
through ctypes; no GPU and no CUDA toolkit needed), so the committed PTX is reproducible.  The
pin is the oldest CUDA 12 NVRTC on PyPI: it emits the oldest PTX ISA of the 12.x line (8.0),
which every driver from R525 on can JIT-compile, and its target compute_70 is JIT-compiled for
Volta, Turing, Ampere, Ada, Hopper and later GPUs.  See docs/gpu.md, "Kernels".
"""

from __future__ import annotations

import argparse
import ctypes
import difflib
import importlib.metadata
import importlib.util
import re
import sys
from pathlib import Path

NVRTC_PACKAGE = "nvidia-cuda-nvrtc-cu12"
NVRTC_PIN = "12.0.140"  # keep in step with the Makefile's install line
TARGET = "compute_70"
OPTIONS = [
    f"--gpu-architecture={TARGET}",
    "--fmad=false",  # never contract a*b+c to FMA (the sources use __fadd_rn etc. too)
    "--ftz=false",  # keep subnormals
    "--prec-div=true",
    "--prec-sqrt=true",
    "--std=c++17",
    "-DRR_KERNEL_CUDA=1",  # the CUDA dialect of dev_kernel_src.h
]
ENTRY = "rr_reduce_kernel"
ENTRIES = (ENTRY, "rr_copy_kernel")
PROGRAM_NAME = "dev_kernel_src.cu"  # no path of this machine reaches NVRTC

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "dev_kernel_src.h"
OUTPUT = HERE / "dev_kernel_ptx.c"
INSTALL_HINT = f"pip install {NVRTC_PACKAGE}=={NVRTC_PIN}"


class NvrtcError(RuntimeError):
    """NVRTC is missing, at the wrong version, or failed to compile the kernel."""


def _load_nvrtc() -> ctypes.CDLL:
    try:
        version = importlib.metadata.version(NVRTC_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise NvrtcError(f"{NVRTC_PACKAGE} is not installed: {INSTALL_HINT}") from None
    if version != NVRTC_PIN:
        raise NvrtcError(
            f"{NVRTC_PACKAGE} {version} is installed, the PTX is pinned to {NVRTC_PIN}: "
            f"{INSTALL_HINT}"
        )
    spec = importlib.util.find_spec("nvidia.cuda_nvrtc")
    if spec is None or not spec.submodule_search_locations:
        raise NvrtcError(f"cannot find the nvidia.cuda_nvrtc package: {INSTALL_HINT}")
    for loc in spec.submodule_search_locations:
        lib = Path(loc) / "lib" / "libnvrtc.so.12"
        if lib.exists():
            try:
                return ctypes.CDLL(str(lib))
            except OSError as exc:
                raise NvrtcError(f"cannot load {lib.name}: {exc}") from None
    raise NvrtcError(f"libnvrtc.so.12 is missing from nvidia/cuda_nvrtc/lib: {INSTALL_HINT}")


def _check(nvrtc: ctypes.CDLL, rc: int, what: str) -> None:
    if rc != 0:
        nvrtc.nvrtcGetErrorString.restype = ctypes.c_char_p
        msg = nvrtc.nvrtcGetErrorString(rc).decode()
        raise NvrtcError(f"{what}: {msg}")


def compile_ptx() -> tuple[str, str]:
    """Return (PTX text, NVRTC version "major.minor") for the kernel source."""
    nvrtc = _load_nvrtc()
    major, minor = ctypes.c_int(), ctypes.c_int()
    _check(nvrtc, nvrtc.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor)), "nvrtcVersion")
    prog = ctypes.c_void_p()
    src = SOURCE.read_bytes()
    _check(
        nvrtc,
        nvrtc.nvrtcCreateProgram(
            ctypes.byref(prog), src, PROGRAM_NAME.encode(), 0, None, None
        ),
        "nvrtcCreateProgram",
    )
    try:
        opts = (ctypes.c_char_p * len(OPTIONS))(*[o.encode() for o in OPTIONS])
        rc = nvrtc.nvrtcCompileProgram(prog, len(OPTIONS), opts)
        size = ctypes.c_size_t()
        nvrtc.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
        log = ctypes.create_string_buffer(size.value)
        nvrtc.nvrtcGetProgramLog(prog, log)
        log_text = log.value.decode(errors="replace").strip()
        if rc != 0:
            raise NvrtcError(f"compiling {PROGRAM_NAME} failed:\n{log_text}")
        if log_text:  # warnings are errors, as for the C sources
            raise NvrtcError(f"NVRTC warnings for {PROGRAM_NAME}:\n{log_text}")
        _check(nvrtc, nvrtc.nvrtcGetPTXSize(prog, ctypes.byref(size)), "nvrtcGetPTXSize")
        buf = ctypes.create_string_buffer(size.value)
        _check(nvrtc, nvrtc.nvrtcGetPTX(prog, buf), "nvrtcGetPTX")
    finally:
        nvrtc.nvrtcDestroyProgram(ctypes.byref(prog))
    return buf.value.decode("ascii"), f"{major.value}.{minor.value}"


def _validate(ptx: str) -> str:
    """Check the PTX's shape; return its ISA version."""
    m = re.search(r"^\.version\s+(\d+\.\d+)\s*$", ptx, re.M)
    if m is None:
        raise NvrtcError("no .version directive in the PTX")
    if not re.search(rf"^\.target\s+{TARGET.replace('compute_', 'sm_')}\s*$", ptx, re.M):
        raise NvrtcError(f"the PTX does not target {TARGET}")
    for entry in ENTRIES:
        if not re.search(rf"\.entry\s+{entry}\b", ptx):
            raise NvrtcError(f"the PTX has no .entry {entry}")
    if re.search(r"\bfma\.", ptx):
        raise NvrtcError("the PTX contains an fma instruction")
    for bad in {str(HERE), str(Path.home()), "/home/", "/tmp/"}:
        if bad and bad in ptx:
            raise NvrtcError(f"the PTX mentions a host path ({bad})")
    return m.group(1)


def _c_literal(line: str) -> str:
    out = line.replace("\\", "\\\\").replace('"', '\\"').replace("\t", "\\t")
    return '"' + out.replace("??", "?\\?") + '\\n"'  # no trigraphs


def render(ptx: str, nvrtc_version: str) -> str:
    """The text of dev_kernel_ptx.c for this PTX."""
    isa = _validate(ptx)
    lines = ptx.rstrip("\n").split("\n")
    head = [
        "/* Generated by csrc/device/gen_ptx.py from csrc/device/dev_kernel_src.h: do not edit;",
        " * run `make ptx`.",
        " *",
        f" * NVRTC {nvrtc_version} from the PyPI wheel {NVRTC_PACKAGE}=={NVRTC_PIN} (pinned: the",
        " * oldest CUDA 12 NVRTC there, for the oldest PTX ISA of the 12.x line).",
        f" * Options: {' '.join(OPTIONS)}",
        f" * PTX ISA {isa}, target {TARGET}: drivers from R525 (CUDA 12.0) on JIT-compile it for",
        " * Volta (sm_70) and every later GPU.  No FMA instruction (checked by gen_ptx.py). */",
        '#include "device/dev_kernel.h"',
        "",
        "const char rr_dev_kernel_ptx[] =",
    ]
    body = ["    " + _c_literal(ln) for ln in lines]
    body[-1] += ";"
    return "\n".join(head + body) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="compare with the committed file")
    args = ap.parse_args(argv)
    try:
        text = render(*compile_ptx())
    except NvrtcError as exc:
        print(f"gen_ptx: {exc}", file=sys.stderr)
        return 2
    if args.check:
        old = OUTPUT.read_text() if OUTPUT.exists() else ""
        if old == text:
            print(f"gen_ptx: {OUTPUT.name} is up to date")
            return 0
        diff = list(
            difflib.unified_diff(
                old.splitlines(), text.splitlines(), "committed", "regenerated", lineterm=""
            )
        )
        print(f"gen_ptx: {OUTPUT.name} is stale ({len(diff)} diff lines); run `make ptx`")
        print("\n".join(diff[:40]))
        return 1
    OUTPUT.write_text(text)
    print(f"gen_ptx: wrote {OUTPUT.name} ({len(text)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
