"""The C background engine (csrc/engine/engine.c) and the Handle it returns.

The engine is created lazily, on the first asynchronous call, by ``Context.get_engine()``;
its creation duplicates the communicator, so every rank must make its first asynchronous
call (or ``join()``) at the same point of its sequence of ringred calls.
"""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from ._lib import (
    ENGINE_NPHASES,
    NULL,
    Status,
    cast,
    cstr,
    error_for,
    from_buffer,
    new,
    rr_engine_allreduce,
    rr_engine_allreduce_device,
    rr_engine_create_ex,
    rr_engine_destroy,
    rr_engine_error,
    rr_engine_finish,
    rr_engine_join,
    rr_engine_join_result,
    rr_engine_last_error,
    rr_engine_phases,
    rr_engine_poll,
    rr_engine_reject,
    rr_engine_release,
    rr_engine_result_copy,
    rr_engine_result_rows,
    rr_engine_stats,
    rr_engine_stop,
    rr_engine_submit,
    rr_engine_take_warning,
    rr_engine_timeline_start,
    rr_engine_timeline_stop,
    rr_engine_wait,
)
from ._pool import ResultPool
from .errors import RingredTimeoutError, StallWarning

_PENDING, _OK, _FAILED = 0, 1, 2
_SLICE = 0.25  # seconds per C-level wait, between checks for stall warnings
_TIMEOUT = int(Status.ERR_TIMEOUT)
_PHASES = ("negotiate_s", "copy_in_s", "reduce_s", "copy_out_s", "wait_s", "fused", "direct",
           "fused_bytes", "direct_bytes", "units")
_NPHASES = ENGINE_NPHASES


def _last_error(h: Any) -> str:
    return cstr(rr_engine_last_error(h))


class Handle:
    """An outstanding asynchronous operation: ``wait()`` for its result, ``done()`` to poll.

    The input (and output) buffers are kept alive by the handle and must not be modified
    until ``wait()`` returns.
    """

    __slots__ = ("_engine", "_ids", "_refs", "_finish", "_state", "_value", "name", "_fast")

    def __init__(self, engine: Engine, ids: Sequence[int], name: str, refs: tuple,
                 finish: Callable[[], Any]):
        self._engine = engine
        self._ids = tuple(ids)
        self._refs = refs
        self._finish = finish
        self._state = _PENDING
        self._value: Any = None
        self.name = name
        self._fast = finish is None  # the result is refs[1], nothing to collect

    def wait(self, timeout: float | None = None) -> Any:
        """Block until the operation is done and return its result.

        Raises the operation's error (MismatchError, StallError, ...) if it failed, and
        RingredTimeoutError if ``timeout`` seconds pass first (the operation stays pending).
        """
        if self._state == _PENDING:
            self._engine.wait(self, timeout)
        if self._state == _FAILED:
            raise self._value
        return self._value

    def done(self) -> bool:
        """True once the operation has completed (successfully or not)."""
        if self._state == _PENDING:
            self._engine.poll(self)
        return self._state != _PENDING

    def __repr__(self) -> str:
        state = ("pending", "done", "failed")[self._state]
        return f"<ringred.Handle {self.name!r} {state}>"


class Engine:
    """One C engine: its own communicator and background thread."""

    def __init__(self, mpi_comm: Any, rank: int, size: int, arena_from: Any = None):
        """``arena_from``: the rr_comm whose shared buffers (ringred.empty) the engine should
        read in place (the context's; collective like the creation itself)."""
        out = new("rr_engine **")
        st = rr_engine_create_ex(mpi_comm.py2f(), arena_from or NULL, out)
        if st != 0:
            raise error_for(st, f"cannot start the ringred engine: {_last_error(NULL)}")
        self.h = out[0]
        self.rank = rank
        self.size = size
        self._lock = threading.Lock()
        self._counters: dict[str, int] = {}
        self._live: dict[int, Handle] = {}
        self._sweep_at = 4096
        self._tls = threading.local()
        self.results = ResultPool()  # result arrays of allreduces without out=
        self.closed = False

    # ------------------------------------------------------------------ names
    def auto_name(self, kind: str) -> str:
        """``<kind>.noname.<n>`` from a per-kind counter: only matches across ranks if every
        rank makes its unnamed calls of that kind in the same order."""
        with self._lock:
            n = self._counters.get(kind, 0) + 1
            self._counters[kind] = n
        return f"{kind}.noname.{n}"

    # ------------------------------------------------------------------ submission
    def scratch(self) -> Any:
        """This thread's reusable ``rr_request`` (the C side copies it at submission)."""
        try:
            return self._tls.req
        except AttributeError:
            req = new("rr_request *")
            self._tls.req = req
            self._tls.name = new("char[]", 256)
            self._tls.ids = new("uint64_t[]", 1)
            return req

    def set_name(self, req: Any, name: str) -> Any:
        """Point ``req.name`` at ``name``; returns what must stay alive until submission."""
        b = name.encode()
        if len(b) < 255:
            buf = self._tls.name
            buf[0:len(b) + 1] = b + b"\0"
        else:
            buf = new("char[]", b)
        req.name = buf
        return buf

    def submit(self, reqs: Any, n: int, name: str, refs: tuple,
               finish: Callable[[], Any]) -> Handle:
        """Submit ``n`` filled ``rr_request`` structs atomically; return their Handle."""
        if self.closed:
            raise error_for(Status.ERR_STATE, "ringred was shut down: the engine is closed")
        ids = self._scratch_ids() if n == 1 else new("uint64_t[]", n)
        st = rr_engine_submit(self.h, reqs, n, ids)
        if st != 0:
            raise error_for(st, _last_error(self.h))
        return self._track(Handle(self, (ids[0],) if n == 1 else tuple(ids), name, refs,
                                  finish))

    def reject(self, name: str, kind: int, exc: BaseException, group_size: int = 0) -> None:
        """This rank refused ``name`` (``exc``): submit a rejection so that the other ranks
        fail that name at once with this reason instead of stalling.  A grouped call
        (``group_size`` > 0) rejects every member ``name[i]``."""
        if self.closed:
            return
        reason = f"{type(exc).__name__}: {exc}".encode(errors="replace")[:1500]
        if group_size:
            group = new("char[]", name.encode())
            names = [new("char[]", f"{name}[{i}]".encode()) for i in range(group_size)]
            reqs = new("rr_request[]", [
                {"name": nm, "kind": kind, "group": group, "group_size": group_size}
                for nm in names])
            rr_engine_reject(self.h, reqs, group_size, reason)
            return
        nm = new("char[]", name.encode())
        req = new("rr_request *", {"name": nm, "kind": kind})
        rr_engine_reject(self.h, req, 1, reason)

    def allreduce(self, name: str, x: Any, res: Any, code: int, cop: int, post: float,
                  div: int) -> Handle:
        """The hot path: one contiguous NumPy allreduce, no scale factors, a new result."""
        if self.closed:
            raise error_for(Status.ERR_STATE, "ringred was shut down: the engine is closed")
        ids = self._scratch_ids()
        st = rr_engine_allreduce(self.h, name.encode(), from_buffer(x),
                                     from_buffer(res), x.size, code, cop, 1.0, post, div,
                                     x.ndim, x.shape, ids)
        if st != 0:
            raise error_for(st, _last_error(self.h))
        return self._track(Handle(self, (ids[0],), name, (x, res), None))

    def _track(self, handle: Handle) -> Handle:
        """Keep a new handle in the live table (swept when it grows)."""
        live = self._live
        live[handle._ids[0]] = handle
        if len(live) >= self._sweep_at:
            with self._lock:
                self._sweep()
        return handle

    def _scratch_ids(self) -> Any:
        """This thread's one-element id array."""
        try:
            return self._tls.ids
        except AttributeError:
            self.scratch()
            return self._tls.ids

    def allreduce_device(self, name: str, keep: tuple, send: int, recv: int, count: int,
                         code: int, cop: int, pre: float, post: float, div: int, shape: Any,
                         backend: int, device: int, stream: int,
                         finish: Callable[[], Any] | None) -> Handle:
        """The device hot path: one device allreduce (``keep`` holds its buffers; without
        ``finish``, ``wait()`` returns ``keep[1]``).  Backend 0: host addresses (the torch CPU
        hot path, ringred/_torch_fast.py)."""
        if self.closed:
            raise error_for(Status.ERR_STATE, "ringred was shut down: the engine is closed")
        ids = self._scratch_ids()
        st = rr_engine_allreduce_device(
            self.h, name.encode(), cast("void *", send), cast("void *", recv), count,
            code, cop, pre, post, div, len(shape), shape, backend, device, stream, ids)
        if st != 0:
            raise error_for(st, _last_error(self.h))
        return self._track(Handle(self, (ids[0],), name, keep, finish))

    def _sweep(self) -> None:
        """Finish handles the user dropped without waiting (keeps the live table bounded)."""
        flag = new("int *")
        done = [h for h in list(self._live.values())
                if all(rr_engine_poll(self.h, i, flag) == 0 and flag[0] for i in h._ids)]
        for h in done:
            self._finalize(h)
        self._sweep_at = max(4096, 2 * len(self._live))

    # ------------------------------------------------------------------ completion
    def _finalize(self, h: Handle, status: int | None = None) -> None:
        """Collect the status of a done handle, compute its value, release its ids."""
        if h._state != _PENDING:
            return
        err = None
        for i in h._ids:
            st = status if status is not None else rr_engine_wait(self.h, i, 0.0)
            if st != 0 and err is None:
                msg = cstr(rr_engine_error(self.h, i))
                err = error_for(st, msg)
        if err is None:
            try:
                h._value = h._refs[1] if h._fast else h._finish()
                h._state = _OK
            except Exception as exc:  # noqa: BLE001 - delivered at wait()
                h._value, h._state = exc, _FAILED
        else:
            h._value, h._state = err, _FAILED
        for i in h._ids:
            rr_engine_release(self.h, i)
        h._refs = ()
        h._finish = _nothing
        self._live.pop(h._ids[0], None)

    def wait(self, h: Handle, timeout: float | None) -> None:
        ids = h._ids
        if h._fast and timeout is None:  # the common case: one C call
            st = rr_engine_finish(self.h, ids[0], _SLICE)
            if st == 0:  # done, and released by rr_engine_finish
                h._value, h._state, h._refs = h._refs[1], _OK, ()
                self._live.pop(ids[0], None)
                return
            if st != _TIMEOUT:
                self._finalize(h, st)
                return
        elif timeout is None and len(ids) == 1:
            st = rr_engine_wait(self.h, ids[0], _SLICE)
            if st != _TIMEOUT:
                self._finalize(h, st)
                return
        deadline = None if timeout is None else time.monotonic() + timeout
        for i in ids:
            while True:
                left = _SLICE if deadline is None else max(0.0, deadline - time.monotonic())
                st = rr_engine_wait(self.h, i, min(_SLICE, left))
                if st != _TIMEOUT:
                    break
                self.emit_warnings()
                if deadline is not None and time.monotonic() >= deadline:
                    raise RingredTimeoutError(
                        f"'{h.name}' is not done after {timeout} s (it stays pending)")
        self._finalize(h, st if len(ids) == 1 else None)

    def poll(self, h: Handle) -> None:
        flag = new("int *")
        for i in h._ids:
            rr_engine_poll(self.h, i, flag)
            if not flag[0]:
                return
        self._finalize(h)

    def emit_warnings(self) -> None:
        """Emit the stall inspector's queued warnings (rank 0) with warnings.warn."""
        buf = new("char[]", 8192)
        got = new("int *")
        while rr_engine_take_warning(self.h, buf, 8192, got) == 0 and got[0]:
            warnings.warn(cstr(buf), StallWarning, stacklevel=4)

    # ------------------------------------------------------------------ results
    def gathered(self, h: Handle, idx: int = 0) -> tuple[list[int], Callable[[Any], None]]:
        """Rows from each rank of an allgather, and a function copying the data out."""
        i = h._ids[idx]
        rows = new("size_t[]", self.size)
        st = rr_engine_result_rows(self.h, i, rows)
        if st:
            raise error_for(st, _last_error(self.h))

        def copy(dst: Any, nbytes: int) -> None:
            s = rr_engine_result_copy(self.h, i, dst, nbytes)
            if s:
                raise error_for(s, _last_error(self.h))

        return list(rows), copy

    # ------------------------------------------------------------------ join
    def join(self) -> int:
        """Block until every rank has joined; return the last rank to join."""
        jid = new("uint64_t *")
        st = rr_engine_join(self.h, jid)
        if st:
            raise error_for(st, _last_error(self.h))
        try:
            while True:
                st = rr_engine_wait(self.h, jid[0], _SLICE)
                if st != _TIMEOUT:
                    break
                self.emit_warnings()
            if st:
                raise error_for(st, cstr(rr_engine_error(self.h, jid[0])))
            last = new("int *")
            st = rr_engine_join_result(self.h, jid[0], last)
            if st:
                raise error_for(st, _last_error(self.h))
            return int(last[0])
        finally:
            rr_engine_release(self.h, jid[0])

    def stats(self) -> dict[str, int]:
        """Cycles run since the engine started, and how many took the slow path."""
        c = new("uint64_t[2]")
        rr_engine_stats(self.h, c, c + 1)
        return {"cycles": int(c[0]), "slow_cycles": int(c[1])}

    def phases(self) -> dict[str, float]:
        """Cumulative per-phase counters of the engine (csrc/ringred.h RR_PH_*): seconds in
        negotiation, fusion copy-in, reduction, copy-out and user waits; tensors and bytes
        reduced fused or directly; collectives run for allreduce units."""
        out = new("double[]", _NPHASES)
        rr_engine_phases(self.h, out, _NPHASES)
        return dict(zip(_PHASES, out, strict=True))

    # ------------------------------------------------------------------ timeline
    def timeline_start(self, path: str) -> None:
        st = rr_engine_timeline_start(self.h, path.encode())
        if st:
            raise error_for(st, _last_error(self.h))

    def timeline_stop(self) -> None:
        rr_engine_timeline_stop(self.h)

    # ------------------------------------------------------------------ lifetime
    def close(self) -> None:
        """Stop the background thread (collective), settle every handle, free the engine."""
        if self.closed:
            return
        self.closed = True
        rr_engine_stop(self.h)
        with self._lock:
            live = list(self._live.values())
        for h in live:
            self._finalize(h)
        rr_engine_destroy(self.h)
        self.h = NULL
        self.results.clear()


def _nothing() -> None:
    return None
