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
    "RINGRED_TRANSPORT": ("auto", "auto (shm when every rank shares a host), shm or mpi"),
    "RINGRED_SHM_SMALL_BYTES": ("32768", "shm: messages up to this take the one-sync path"),
    "RINGRED_SHM_SLOT_BYTES": ("262144", "shm: pipeline chunk of large messages"),
    "RINGRED_SHM_STREAM_BYTES": ("8388608", "shm: non-temporal stores for outputs this large"),
    "RINGRED_SHM_ARENA_BYTES": ("17179869184", "shm: address space per rank for shared buffers"),
    "RINGRED_SHM_SPIN_US": ("50", "shm: most microseconds a waiting rank polls before yielding"),
    "RINGRED_TIMEOUT_SECONDS": ("300", "give up on a live but silent peer after this (0: never)"),
    "RINGRED_SHM_TIMEOUT_SECONDS": ("300", "older name of RINGRED_TIMEOUT_SECONDS"),
    # the background engine (allreduce_async & co.; rank 0's values are used everywhere)
    "RINGRED_FUSION_THRESHOLD": ("67108864", "bytes of small allreduces fused into one (0: off)"),
    "RINGRED_FUSION_MAX_TENSOR": ("65536", "larger tensors skip the fusion buffer"),
    "RINGRED_CACHE_CAPACITY": ("1024", "negotiated names remembered (0: off)"),
    "RINGRED_STALL_CHECK_SECONDS": ("60", "warn about tensors some ranks never sent (0: off)"),
    "RINGRED_STALL_SHUTDOWN_SECONDS": ("0", "fail such tensors after this long (0: never)"),
    "RINGRED_ENGINE_COLD_SET_BYTES": ("33554432", "engine: gradient sets this large stream"),
    "RINGRED_TIMELINE": ("off", "write a Chrome-trace timeline to this file (rank 0)"),
    "RINGRED_RESULT_POOL_BYTES": ("1073741824", "engine: reusable result arrays kept (0: off)"),
    "RINGRED_RESULT_POOL_MIN_BYTES": ("65536", "engine: smaller results are fresh arrays"),
    "RINGRED_LOG": ("off", "info: transport, kernels, settings per communicator and engine; "
                           "debug: also each call's plan (stderr; logger 'ringred')"),
    # GPU buffers (docs/gpu.md)
    "RINGRED_DEVICE_SEGMENT_BYTES": ("2097152", "GPU staging: bytes per pipeline segment"),
    "RINGRED_DEVICE_SLOTS": ("4", "GPU staging: pinned host slots in the pipeline"),
    "RINGRED_CUDA_AWARE": ("auto", "device pointers straight to a CUDA-aware MPI: auto, 0, 1"),
    "RINGRED_DEVICE_TRANSPORT": ("auto", "GPU allreduce between same-host ranks: auto, ipc, "
                                         "staged"),
    "RINGRED_DEVICE_PACK": ("kernel", "engine: pack device tensors with the copy kernel or "
                                      "one copy each (copies)"),
    "RINGRED_IPC_MIN_BYTES": ("1048576", "CUDA IPC: smaller allreduces stay staged"),
    "RINGRED_IPC_CHUNK_BYTES": ("134217728", "CUDA IPC: bytes per scratch slot (a chunk)"),
    "RINGRED_IPC_ONESHOT_BYTES": ("4194304", "CUDA IPC: chunks this small reduced in one shot"),
    "RINGRED_IPC_SLOTS": ("2", "CUDA IPC: scratch slots per rank (2 .. 4)"),
}


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
    for name, (default, what) in SETTINGS.items():
        val = os.environ.get(name)
        shown = val if val else f"{default} (default)"
        facts[name] = f"{shown}  # {what}"
    return facts


def main() -> None:
    """Print the facts, one per line."""
    facts = describe()
    width = max(len(k) for k in facts)
    for k, v in facts.items():
        print(f"{k:{width}s} {v}")


if __name__ == "__main__":
    main()
