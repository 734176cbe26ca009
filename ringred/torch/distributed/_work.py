"""``Work`` objects whose futures complete when ringred's engine finishes the operation.

Every collective of the process group submits its engine requests at once and returns a
:class:`RingredWork`.  One background thread per process (the *completer*) takes the works
in submission order, waits on their engine handles and completes their futures, so
``get_future()`` callbacks (DDP's comm hooks) run without anybody calling ``wait()``.
A thread that calls ``wait()`` on a work the completer has not reached yet waits on the
engine handle itself (the engine then progresses in that thread, which saves the hand-off
between threads); exactly one of the two finishes each work.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist


class RingredWork(dist.Work):
    """One collective in flight: engine handles plus what to do with their results."""

    def __init__(self, handles: Sequence[Any], finish: Callable[[list], Any],
                 what: str):
        super().__init__()
        self._handles = list(handles)
        self._finish = finish
        self._what = what
        self._fut: torch.futures.Future = torch.futures.Future()
        self._claim = threading.Lock()
        self._claimed = False
        self._done = threading.Event()
        self._error: BaseException | None = None

    # the one finisher ------------------------------------------------------------
    def _take(self) -> bool:
        with self._claim:
            if self._claimed:
                return False
            self._claimed = True
            return True

    def _run(self) -> None:
        try:
            values = [h.wait() for h in self._handles]
            result = self._finish(values)
        except BaseException as exc:  # noqa: BLE001 - delivered through the future
            self._error = exc
            self._handles = []
            self._done.set()
            self._fut.set_exception(
                RuntimeError(f"ringred {self._what} failed: {exc}") if not isinstance(
                    exc, RuntimeError | ValueError) else exc)
            return
        self._handles = []
        self._done.set()
        self._fut.set_result(result)

    # torch's Work API -------------------------------------------------------------
    def wait(self, timeout: timedelta | None = None) -> bool:  # noqa: D102
        if self._take():
            self._run()
        else:
            self._done.wait()
        if self._error is not None:
            raise self._error
        return True

    def is_completed(self) -> bool:  # noqa: D102
        return self._done.is_set()

    def is_success(self) -> bool:  # noqa: D102
        return self._done.is_set() and self._error is None

    def exception(self) -> Any:  # noqa: D102
        return self._error

    def get_future(self) -> torch.futures.Future:  # noqa: D102
        return self._fut

    def synchronize(self) -> None:  # noqa: D102
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
            self._cond.notify()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stop:
                    self._cond.wait()
                if not self._queue:
                    return
                work = self._queue.popleft()
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
