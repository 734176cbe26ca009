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
_tls = threading.local()


def lineage() -> str | None:
    """The name of the collective whose future callback this thread is running, if any.

    Collectives issued from a callback (PowerSGD's hook issues its second allreduce from one)
    are named after it, not by the group's running count: callbacks run in whichever thread
    completes the future, concurrently with the caller's next collectives, so their place in
    the call order differs by rank while their lineage does not."""
    return getattr(_tls, "lineage", None)


class LineageFuture(torch.futures.Future):
    """A future whose callbacks run with their collective's lineage (see ``lineage``); the
    futures that ``then`` returns are LineageFutures too, so a whole chain keeps it."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self._lineage = name

    def _call(self, callback: Callable[[Any], Any]) -> Any:
        saved = getattr(_tls, "lineage", None)
        _tls.lineage = self._lineage
        try:
            return callback(self)
        finally:
            _tls.lineage = saved

    def then(self, callback: Callable[[Any], Any]) -> LineageFuture:  # type: ignore[override]
        """Like torch's ``then``; the callback runs with this future's lineage."""
        child = LineageFuture(self._lineage)

        def run(_fut: Any) -> None:
            try:
                value = self._call(callback)
            except BaseException as exc:  # noqa: BLE001 - delivered through the child
                child.set_exception(exc)
                return
            child.set_result(value)

        super().add_done_callback(run)
        return child

    def add_done_callback(self, callback: Callable[[Any], None]) -> None:
        """Like torch's ``add_done_callback``; the callback runs with this lineage."""
        super().add_done_callback(lambda _f: self._call(callback))


class RingredWork(dist.Work):
    """One collective in flight: engine handles plus what to do with their results."""

    def __init__(self, handles: Sequence[Any], finish: Callable[[list], Any], what: str,
                 name: str = ""):
        super().__init__()
        self._handles = list(handles)
        self._finish = finish
        self._what = what
        self._fut = LineageFuture(name or what)
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

    def _run(self, deliver: Callable[[Callable[[], None]], None] | None = None) -> None:
        """Wait for the engine, run the finishing step, complete the future (through
        ``deliver`` when given: the future's callbacks run in the thread that completes it,
        and may block on later collectives)."""
        try:
            values = [h.wait() for h in self._handles]
            result = self._finish(values)
        except BaseException as exc:  # noqa: BLE001 - delivered through the future
            if not isinstance(exc, RuntimeError | ValueError | NotImplementedError):
                exc = RuntimeError(f"ringred {self._what} failed: {type(exc).__name__}: {exc}")
            self._error = exc
            self._handles = []
            complete = lambda err=exc: self._fut.set_exception(err)  # noqa: E731
        else:
            self._handles = []
            complete = lambda res=result: self._fut.set_result(res)  # noqa: E731
        self._finish = _no_finish  # drop the closure (and the tensors it holds)
        if deliver is None:
            complete()
        else:
            deliver(complete)

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


class _Deliverers:
    """Threads that complete futures (and so run their callbacks).  A callback may wait for
    a later collective (PowerSGD's hook does): a new thread starts whenever none is idle, so
    the completer itself never blocks in user code."""

    def __init__(self) -> None:
        self._items: deque[Callable[[], None]] = deque()
        self._cond = threading.Condition()
        self._idle = 0
        self._stop = False
        self._threads: list[threading.Thread] = []

    def __call__(self, complete: Callable[[], None]) -> None:
        with self._cond:
            self._items.append(complete)
            if self._idle >= len(self._items):
                self._cond.notify()
                return
        t = threading.Thread(target=self._loop, name="ringred-torch-deliver", daemon=True)
        self._threads.append(t)
        t.start()

    def _loop(self) -> None:
        while True:
            with self._cond:
                self._idle += 1
                while not self._items and not self._stop:
                    self._cond.wait()
                self._idle -= 1
                if not self._items:
                    return
                complete = self._items.popleft()
            complete()

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        for t in self._threads:
            t.join()


class Completer:
    """The background thread that completes works in submission order."""

    def __init__(self) -> None:
        self._deliver = _Deliverers()
        self._queue: deque[RingredWork] = deque()
        self._cond = threading.Condition()
        self._stop = False
        self._added = 0
        self._asleep = False
        self._thread = threading.Thread(target=self._loop, name="ringred-torch-completer",
                                        daemon=True)
        self._thread.start()

    def add(self, work: RingredWork) -> None:
        """Queue ``work``; the completer finishes it unless a waiter does first.  The
        completer is woken only from its idle sleep: while works come and go it checks the
        queue every GRACE seconds anyway, and waking it on every submission would cost a
        thread switch per collective (the submitting thread usually finishes the work)."""
        with self._cond:
            self._queue.append(work)
            self._added += 1
            if self._asleep:
                self._cond.notify()

    def _loop(self) -> None:
        seen = -1
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
                    elif self._added != seen:  # busy lately: look again in GRACE
                        seen = self._added
                        self._cond.wait(_GRACE)
                    else:  # nothing for a while: sleep until add() wakes us
                        self._asleep = True
                        self._cond.wait()
                        self._asleep = False
            if work._take():
                work._run(self._deliver)

    def stop(self) -> None:
        """Finish what is queued, then end the threads."""
        with self._cond:
            self._stop = True
            self._cond.notify()
        self._thread.join()
        self._deliver.stop()


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


def _no_finish(_values: list) -> None:
    return None


def done_work(result: Any) -> RingredWork:
    """A work that is already complete (collectives with nothing to send)."""
    w = RingredWork([], lambda _v: result, "no-op")
    w._take()
    w._run()
    return w
