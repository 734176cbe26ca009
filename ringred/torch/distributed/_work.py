"""``Work`` objects whose futures complete when ringred's engine finishes the operation.

Every collective of the process group submits its engine requests at once and returns a
:class:`RingredWork`.  One background thread per process (the *completer*) takes the works
whose futures were asked for, in that order, waits on their engine handles and completes
their futures, so ``get_future()`` callbacks (DDP's comm hooks) run without anybody
calling ``wait()``.

Works reach the completer only through ``get_future()`` (DDP's hooks ask for every
bucket's, and nobody waits on those works), and the completer takes them at once.  A work
that is only ``wait()``ed for (``dist.all_reduce`` without ``async_op``) is finished by the
waiting thread: no future, no hand-off between threads (which costs more than a small
collective on a busy host).  Exactly one thread finishes each work.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

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
    """One collective in flight: engine handles plus what to do with their results.

    The future is made on the first ``get_future()``, which also hands the work to the
    completer; a work that is only ``wait()``ed for (``dist.all_reduce`` without
    ``async_op``) never makes one and never involves the completer thread."""

    def __init__(self, handles: Sequence[Any], finish: Callable[[list], Any] | None,
                 what: str, name: str = "", result: Any = None):
        super().__init__()
        self._handles = handles
        self._finish = finish  # None: the result is ``result``
        self._value = result
        self._what = what
        self._name = name or what
        self._fut: LineageFuture | None = None
        self._claim = threading.Lock()
        self._claimed = False
        self._done = False
        self._error: BaseException | None = None

    def _take(self) -> bool:
        """Become the one finisher (False if another thread already is)."""
        with self._claim:
            if self._claimed:
                return False
            self._claimed = True
            return True

    def _complete(self, fut: torch.futures.Future) -> None:
        if self._error is not None:
            fut.set_exception(self._error)
        else:
            fut.set_result(self._value)

    def _run(self, deliver: Callable[[Callable[[], None]], None] | None = None) -> None:
        """Wait for the engine, run the finishing step, complete the future if there is one
        (through ``deliver`` when given: the future's callbacks run in the thread that
        completes it, and may block on later collectives)."""
        try:
            values = [h.wait() for h in self._handles]
            if self._finish is not None:
                self._value = self._finish(values)
        except BaseException as exc:  # noqa: BLE001 - delivered through wait / the future
            if not isinstance(exc, RuntimeError | ValueError | NotImplementedError):
                exc = RuntimeError(f"ringred {self._what} failed: {type(exc).__name__}: {exc}")
            self._error, self._value = exc, None
        self._handles = ()
        self._finish = None  # drop the closure (and the tensors it holds)
        with self._claim:
            self._done = True
            fut = self._fut
        if fut is None:
            return
        if deliver is None:
            self._complete(fut)
        else:
            deliver(lambda: self._complete(fut))

    def _future(self, track: bool) -> LineageFuture:
        """The future, made now if needed: completed at once if the work is done, else by
        whoever finishes it; ``track``: hand an unclaimed work to the completer."""
        with self._claim:
            fut = self._fut
            if fut is not None:
                return fut
            fut = self._fut = LineageFuture(self._name)
            done, claimed = self._done, self._claimed
        if done:
            self._complete(fut)
        elif track and not claimed:
            completer().add(self)
        return fut

    # torch's Work API -------------------------------------------------------------
    def wait(self, timeout: timedelta | None = None) -> bool:
        """Block until the collective is done; raise its error if it failed."""
        if self._take():
            self._run()
        elif not self._done:  # another thread finishes it: wait for its future
            try:
                self._future(track=False).wait()
            except Exception:  # noqa: BLE001 - re-raised as the original below
                pass
        if self._error is not None:
            raise self._error
        return True

    def is_completed(self) -> bool:
        """Whether the collective has finished (successfully or not); a work whose engine
        operations are done is finished here, so polling alone makes progress."""
        if self._done:
            return True
        if self._claimed or not all(h.done() for h in self._handles):
            return False
        if self._take():
            self._run()
        return self._done

    def is_success(self) -> bool:
        """Whether the collective finished without error."""
        return self.is_completed() and self._error is None

    def exception(self) -> Any:
        """The collective's error, or None."""
        return self._error

    def get_future(self) -> torch.futures.Future:
        """A future completed (from the engine's completion, by the completer thread when
        nobody waits) with the output tensors."""
        return self._future(track=True)

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
    """The background thread that completes, in order, the works whose futures were asked
    for (unless a waiter claims one first)."""

    def __init__(self) -> None:
        self._deliver = _Deliverers()
        self._queue: deque[RingredWork] = deque()
        self._cond = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._loop, name="ringred-torch-completer",
                                        daemon=True)
        self._thread.start()

    def add(self, work: RingredWork) -> None:
        """Queue ``work``; the completer waits for it next, unless a waiter claims it."""
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


def done_work(result: Any) -> RingredWork:
    """A work that is already complete (collectives with nothing to send)."""
    w = RingredWork((), None, "no-op", result=result)
    w._take()
    w._run()
    return w
