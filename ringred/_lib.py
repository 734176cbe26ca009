"""The seam between Python and the C core: the only module that touches cffi's ``ffi`` and
``lib`` (tests/test_seam.py enforces it).

Everything the rest of the package needs from C comes from here:

- ``IntEnum``s built from the header's constants at import (``Status``, ``DType``, ``Op``,
  ``ReqKind``, ``Backend``), so that no C number is ever written out in Python;
- the C functions, bound one by one to module names (``rr_allreduce = lib.rr_allreduce``):
  a caller imports the names it uses and calls them with no attribute lookup (the
  synchronous allreduce costs about 2 us of Python in all);
- the few cffi operations the callers need (``new``, ``from_buffer``, ``cast``, ``NULL``)
  and typed helpers (``cstr``, ``cbuf``, ``shared_alloc``, ``error_for``, ``make_error``,
  ``check``): C status codes become exceptions here, through the one table in errors.py.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import IntEnum
from typing import Any

import numpy as np

from .errors import BY_STATUS, RingredError

try:
    from ._libmpi import load as _load

    _ext = _load()
    ffi, lib = _ext.ffi, _ext.lib
except ImportError as exc:  # pragma: no cover - exercised only on a broken install
    raise ImportError(
        "ringred's C extension is not built: install with `pip install .` (or `make test`), "
        f"which compiles csrc/ through cffi ({exc})"
    ) from exc


# ---------------------------------------------------------------- constants (csrc/ringred.h)
def _enum(name: str, prefix: str, names: list[str]) -> Any:
    """An IntEnum of the C constants ``prefix + n`` for ``n`` in ``names``, values from C."""
    return IntEnum(name, [(n, getattr(lib, prefix + n)) for n in names])


#: rr_status: OK and every RR_ERR_* the header declares (read from the extension).
Status = _enum("Status", "RR_", sorted(
    (n[3:] for n in dir(lib) if n == "RR_OK" or n.startswith("RR_ERR_")),
    key=lambda n: getattr(lib, "RR_" + n)))
#: rr_dtype
DType = _enum("DType", "RR_", ["UINT8", "INT8", "INT16", "INT32", "INT64", "FLOAT16",
                               "BFLOAT16", "FLOAT32", "FLOAT64"])
#: rr_op (ReduceOp.Average travels as SUM plus a scale)
Op = _enum("Op", "RR_", ["SUM", "MIN", "MAX", "PROD"])
#: rr_request.kind: the collectives of the engine's requests and of rr_poison
ReqKind = _enum("ReqKind", "RR_REQ_", ["ALLREDUCE", "BROADCAST", "ALLGATHER",
                                       "REDUCESCATTER"])
#: where buffers live (rr_request.backend, rr_device_*): CUDA or the fake test device
Backend = _enum("Backend", "RR_DEVICE_", ["CUDA", "FAKE"])
#: rr_request.backend for host memory (ringred.h: "backend 0 = host memory")
HOST_BACKEND = 0
MAX_DIMS: int = lib.RR_MAX_DIMS
ENGINE_NPHASES: int = lib.RR_ENGINE_NPHASES

# (plain ints: the hot paths look their int codes up here)
FLOAT_DTYPES = frozenset(int(d) for d in (DType.FLOAT16, DType.BFLOAT16, DType.FLOAT32,
                                          DType.FLOAT64))

# ---------------------------------------------------------------- cffi operations
NULL = ffi.NULL
new: Callable[..., Any] = ffi.new
from_buffer: Callable[..., Any] = ffi.from_buffer
cast: Callable[[str, Any], Any] = ffi.cast


def cstr(p: Any) -> str:
    """Decode a C string (invalid UTF-8 replaced)."""
    return ffi.string(p).decode(errors="replace")


def cbuf(a: np.ndarray) -> Any:
    """A cffi view of a C-contiguous array's memory (no copy)."""
    try:
        return ffi.from_buffer(a)
    except (ValueError, TypeError, BufferError):
        # dtypes the buffer protocol cannot describe (ml_dtypes' bfloat16): same bytes.
        return ffi.from_buffer(a.view(np.uint8 if a.itemsize == 1 else f"u{a.itemsize}"))


def shared_alloc(comm: Any, nbytes: int) -> tuple[int, Any]:
    """(status, buffer): ``nbytes`` of the communicator's shared segment as a writable
    buffer, freed when the buffer is garbage-collected (buffer None unless status is OK)."""
    out = ffi.new("void **")
    st = lib.rr_mem_alloc(comm, nbytes, out)
    if st != Status.OK:
        return st, None
    return st, ffi.buffer(ffi.gc(out[0], lib.rr_mem_free), nbytes)


# ---------------------------------------------------------------- status -> exception
_ERROR_TYPE: dict[int, type[RingredError]] = {Status[n]: t for n, t in BY_STATUS.items()}


def error_for(code: int, message: str) -> RingredError:
    """Build the exception for a C status code and its message."""
    return _ERROR_TYPE.get(code, RingredError)(message)


def check(status: int, comm: Any = None, what: str = "") -> None:
    """Raise the exception mapped from ``status`` unless it is RR_OK."""
    if status == 0:
        return
    raise make_error(status, comm, what)


def make_error(status: int, comm: Any = None, what: str = "") -> RingredError:
    """The exception for ``status``, with the communicator's last error message (or the
    status's own text) prefixed by ``what``."""
    detail = ""
    if comm is not None and comm != NULL:
        detail = cstr(lib.rr_comm_last_error(comm))
    if not detail:
        detail = cstr(lib.rr_strerror(status))
    if what:
        kind = what.split(" ", 1)[0] + ": "  # the C core names the collective too: once
        detail = f"{what}: {detail.removeprefix(kind)}"
    return error_for(status, detail)


# ---------------------------------------------------------------- C functions
# Build information
rr_build_info = lib.rr_build_info
rr_kernel_path = lib.rr_kernel_path
# The settings table (csrc/core/settings_table.c)
rr_setting_count = lib.rr_setting_count
rr_setting_info = lib.rr_setting_info
rr_setting_value = lib.rr_setting_value
READER_PYTHON = lib.RR_READER_PYTHON
SETTING_STRICT = lib.RR_SETTING_STRICT
# Communicators (csrc/core/comm.c)
rr_comm_create_ex = lib.rr_comm_create_ex
rr_comm_destroy = lib.rr_comm_destroy
rr_comm_rank = lib.rr_comm_rank
rr_comm_size = lib.rr_comm_size
rr_comm_local_rank = lib.rr_comm_local_rank
rr_comm_local_size = lib.rr_comm_local_size
rr_comm_transport = lib.rr_comm_transport
rr_comm_transport_note = lib.rr_comm_transport_note
rr_comm_set_thread = lib.rr_comm_set_thread
rr_comm_thread_seq = lib.rr_comm_thread_seq
rr_comm_exit_notice = lib.rr_comm_exit_notice
rr_comm_zero_copy_calls = lib.rr_comm_zero_copy_calls
rr_comm_hosts = lib.rr_comm_hosts
rr_comm_hierarchical = lib.rr_comm_hierarchical
rr_comm_hier_calls = lib.rr_comm_hier_calls
# Synchronous host collectives
rr_allreduce = lib.rr_allreduce
rr_broadcast = lib.rr_broadcast
rr_allgather = lib.rr_allgather
rr_reducescatter = lib.rr_reducescatter
rr_barrier = lib.rr_barrier
rr_poison = lib.rr_poison
# Synchronous device collectives
rr_device_backend_available = lib.rr_device_backend_available
rr_device_direct = lib.rr_device_direct
rr_device_transport = lib.rr_device_transport
rr_device_allreduce = lib.rr_device_allreduce
rr_device_broadcast = lib.rr_device_broadcast
rr_device_allgather = lib.rr_device_allgather
rr_device_reducescatter = lib.rr_device_reducescatter
# The background engine (csrc/engine/engine.c)
rr_engine_create_ex = lib.rr_engine_create_ex
rr_engine_destroy = lib.rr_engine_destroy
rr_engine_stop = lib.rr_engine_stop
rr_engine_last_error = lib.rr_engine_last_error
rr_engine_exit_reason = lib.rr_engine_exit_reason
rr_engine_submit = lib.rr_engine_submit
rr_engine_reject = lib.rr_engine_reject
rr_engine_allreduce = lib.rr_engine_allreduce
rr_engine_allreduce_device = lib.rr_engine_allreduce_device
rr_engine_poll = lib.rr_engine_poll
rr_engine_wait = lib.rr_engine_wait
rr_engine_finish = lib.rr_engine_finish
rr_engine_error = lib.rr_engine_error
rr_engine_release = lib.rr_engine_release
rr_engine_take_warning = lib.rr_engine_take_warning
rr_engine_result_rows = lib.rr_engine_result_rows
rr_engine_result_copy = lib.rr_engine_result_copy
rr_engine_join = lib.rr_engine_join
rr_engine_join_result = lib.rr_engine_join_result
rr_engine_stats = lib.rr_engine_stats
rr_engine_phases = lib.rr_engine_phases
rr_engine_timeline_start = lib.rr_engine_timeline_start
rr_engine_timeline_stop = lib.rr_engine_timeline_stop
rr_engine_device_transport = lib.rr_engine_device_transport
rr_engine_zero_copy_calls = lib.rr_engine_zero_copy_calls
rr_engine_hier_calls = lib.rr_engine_hier_calls
# The fake device's producer streams (ringred.testing)
rr_test_fake_stream_create = lib.rr_test_fake_stream_create
rr_test_fake_stream_destroy = lib.rr_test_fake_stream_destroy
rr_test_fake_stream_sleep = lib.rr_test_fake_stream_sleep
rr_test_fake_stream_copy = lib.rr_test_fake_stream_copy
rr_test_fake_stream_sync = lib.rr_test_fake_stream_sync
