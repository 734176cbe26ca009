"""``python -m ringred.info``: version, MPI library, build flags, CPU kernels, settings."""

from __future__ import annotations

import os
import sys

SETTINGS = {
    "RINGRED_SMALL_BYTES": ("65536", "messages up to this many bytes take the latency path"),
    "RINGRED_SEGMENT_BYTES": ("262144", "pipeline segment of the ring"),
    "RINGRED_WINDOW": ("3", "ring segments in flight per direction"),
    "RINGRED_SPIN_COUNT": ("64", "polls before a waiting rank yields its core"),
    "RINGRED_KERNEL_PATH": ("auto", "CPU reduction kernels: auto, scalar, avx2, avx512"),
    # the background engine (allreduce_async & co.; rank 0's values are used everywhere)
    "RINGRED_FUSION_THRESHOLD": ("67108864", "bytes of small allreduces fused into one (0: off)"),
    "RINGRED_FUSION_MAX_TENSOR": ("65536", "larger tensors skip the fusion buffer"),
    "RINGRED_CACHE_CAPACITY": ("1024", "negotiated names remembered (0: off)"),
    "RINGRED_STALL_CHECK_SECONDS": ("60", "warn about tensors some ranks never sent (0: off)"),
    "RINGRED_STALL_SHUTDOWN_SECONDS": ("0", "fail such tensors after this long (0: never)"),
    "RINGRED_TIMELINE": ("off", "write a Chrome-trace timeline to this file (rank 0)"),
}


def describe() -> dict[str, str]:
    """The facts ``python -m ringred.info`` prints, as a dict."""
    from mpi4py import MPI

    import ringred
    from ringred._lib import cstr, lib

    facts = {
        "ringred": ringred.__version__,
        "python": sys.version.split()[0],
        "mpi4py": __import__("mpi4py").__version__,
        "mpi library": MPI.Get_library_version().splitlines()[0].strip(),
        "mpi thread level": {
            MPI.THREAD_SINGLE: "single", MPI.THREAD_FUNNELED: "funneled",
            MPI.THREAD_SERIALIZED: "serialized", MPI.THREAD_MULTIPLE: "multiple",
        }.get(MPI.Query_thread(), "?"),
        "build": cstr(lib.rr_build_info()),
        "cpu kernels": cstr(lib.rr_kernel_path()),
    }
    for name, (default, what) in SETTINGS.items():
        val = os.environ.get(name)
        shown = val if val else f"{default} (default)"
        facts[name] = f"{shown}  # {what}"
    return facts


def main() -> None:
    """Print the facts, one per line."""
    for k, v in describe().items():
        print(f"{k:24s} {v}")


if __name__ == "__main__":
    main()
