"""``Work`` objects whose futures complete when ringred's engine finishes the operation.

Every collective of the process group submits its engine requests at once and returns a
:class:`RingredWork`.  One background thread per process (the *completer*) takes the works
in submission order, waits on their engine handles and completes their futures, so
``get_future()`` callbacks (DDP's comm hooks) run without anybody calling ``wait()``.

A work that a thread ``wait()``s for before the completer reaches it is finished by that
thread: it waits on the engine handle itself, and the engine then progresses in that thread
(no hand-off between threads, which costs more than a small collective on a busy host).
The completer therefore leaves each work alone for GRACE seconds after its submission
(the engine's own thread moves the data meanwhile); exactly one of the two finishes it.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

_GRACE = 1e-3  # seconds a new work is left to a waiting caller before the completer takes it


class RingredWork(dist.Work):
    """One collective in flight: engine handles plus what to do with their results."""

    def __init__(self, handles: Sequence[Any], finish: Callable[[list], Any], what: str):
        super().__init__()
        self._handles = list(handles)
        self._finish = finish
        self._what = what
        self._fut: torch.futures.Future = torch.futures.Future()
        self._claim = threading.Lock()
        self._claimed = False
        self._error: BaseException | None = None
        self._born = time.monotonic()

    def _take(self) -> bool:
        """Become the one finisher (False if another thread already is)."""
        with self._claim:
            if self._claimed:
                return False
            self._claimed = True
            return True

    def _run(self) -> None:
        """Wait for the engine, run the finishing step, complete the future."""
        try:
            values = [h.wait() for h in self._handles]
            result = self._finish(values)
        except BaseException as exc:  # noqa: BLE001 - delivered through the future
            if not isinstance(exc, RuntimeError | ValueError | NotImplementedError):
                exc = RuntimeError(f"ringred {self._what} failed: {type(exc).__name__}: {exc}")
            self._error = exc
            self._handles = []
            self._fut.set_exception(exc)
            return
        self._handles = []
        self._fut.set_result(result)

    # torch's Work API -------------------------------------------------------------
    def wait(self, timeout: timedelta | None = None) -> bool:
        """Block until the collective is done; raise its error if it failed."""
        if self._take():
            self._run()
        else:
            try:
                self._fut.wait()
            except Exception:  # noqa: BLE001 - re-raised as the original below
                pass
        if self._error is not None:
            raise self._error
        return True

    def is_completed(self) -> bool:
        """Whether the collective has finished (successfully or not)."""
        return self._fut.done()

    def is_success(self) -> bool:
        """Whether the collective finished without error."""
        return self._fut.done() and self._error is None

    def exception(self) -> Any:
        """The collective's error, or None."""
        return self._error

    def get_future(self) -> torch.futures.Future:
        """A future completed (from the engine's completion) with the output tensors."""
        return self._fut

    def synchronize(self) -> None:
        """Same as ``wait()`` (CPU only)."""
        self.wait()


class Completer:
    """The background thread that completes works in submission order."""

    def __init__(self) -> None:
        self._queue: deque[RingredWork] = deque()
        self._cond = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._loop, name="ringred-torch-completer",
                                        daemon=True)
        self._thread.start()

    def add(self, work: RingredWork) -> None:
        """Queue ``work``; the completer finishes it unless a waiter does first."""
        with self._cond:
            self._queue.append(work)
            if len(self._queue) == 1:
                self._cond.notify()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while True:
                    while self._queue and self._queue[0]._claimed:
                        self._queue.popleft()
                    if self._queue:
                        age = time.monotonic() - self._queue[0]._born
                        if age >= _GRACE or self._stop:
                            work = self._queue.popleft()
                            break
                        self._cond.wait(_GRACE - age)
                    elif self._stop:
                        return
                    else:
                        self._cond.wait()
            if work._take():
                work._run()

    def stop(self) -> None:
        """Finish what is queued, then end the thread."""
        with self._cond:
            self._stop = True
            self._cond.notify()
        self._thread.join()


_completer: Completer | None = None
_lock = threading.Lock()


def completer() -> Completer:
    """The process's completer thread (started on first use)."""
    global _completer
    if _completer is None:
        with _lock:
            if _completer is None:
                _completer = Completer()
    return _completer


def stop_completer() -> None:
    """Stop the completer (at shutdown, before the engines close)."""
    global _completer
    with _lock:
        c, _completer = _completer, None
    if c is not None:
        c.stop()


def done_work(result: Any) -> RingredWork:
    """A work that is already complete (collectives with nothing to send)."""
    w = RingredWork([], lambda _v: result, "no-op")
    w._take()
    w._run()
    return w
