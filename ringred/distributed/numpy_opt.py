"""DistributedOptimizer for ``ringred.optim`` optimizers (NumPy; CuPy staged through host)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from ..asyncapi import allreduce_async
from ..optim.base import Optimizer, array_namespace
from ._common import Settings, average_parameters

__all__ = ["NumpyDistributedOptimizer"]

_OWN = frozenset({
    "optimizer", "_cfg", "_pending", "_passes", "_local_steps", "_should_sync",
})


class NumpyDistributedOptimizer:
    """Wraps a ``ringred.optim`` optimizer so that ``step(grads)`` averages across ranks.

    Made by ``ringred.DistributedOptimizer(opt, ...)``.  ``step(grads)`` submits one
    allreduce per gradient (named ``grad.<parameter name>``, so ranks match them by name),
    waits for all of them, then applies ``opt.step`` to the averaged gradients.  Every other
    attribute (``params``, ``state``, ``hparams``, ``lr``, ``state_dict``,
    ``load_state_dict``, ...) is the wrapped optimizer's.

    With ``backward_passes_per_step=k`` the first k−1 calls of ``step`` only add their
    gradients to a local sum; the k-th averages the sum across ranks and updates.  With
    ``average_every=k`` gradients are not communicated at all: each rank steps on its own
    gradients and the parameters are averaged across ranks after every k-th step.
    """

    def __init__(self, optimizer: Optimizer, cfg: Settings) -> None:
        object.__setattr__(self, "optimizer", optimizer)
        object.__setattr__(self, "_cfg", cfg)
        object.__setattr__(self, "_pending", {})
        object.__setattr__(self, "_passes", 0)
        object.__setattr__(self, "_local_steps", 0)
        object.__setattr__(self, "_should_sync", True)

    # ------------------------------------------------------------------ delegation

    def __getattr__(self, name: str) -> Any:
        if name == "optimizer":
            raise AttributeError(name)
        return getattr(self.optimizer, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _OWN:
            object.__setattr__(self, name, value)
        else:  # e.g. opt.lr = 0.01 sets the wrapped optimizer's learning rate
            setattr(self.optimizer, name, value)

    def __repr__(self) -> str:
        return f"DistributedOptimizer({self.optimizer!r})"

    # ------------------------------------------------------------------ public API

    def step(self, grads: Mapping[str, Any] | Sequence[Any]) -> None:
        """Average ``grads`` across ranks and apply the wrapped optimizer's update.

        ``grads`` is a dict keyed like ``params`` or a list in the order of
        ``param_names``; ``None`` (or a missing key) on a rank counts as a zero gradient
        there, so ranks whose gradients differ in which parameters they cover do not hang
        (as in Horovod: a parameter without a gradient on every rank is then stepped with a
        zero gradient).  Inside ``with opt.skip_synchronize():`` the gradients are applied
        as given (already averaged by ``synchronize``).
        """
        cfg = self._cfg
        by_name = self.optimizer._normalize_grads(grads)
        if cfg.average_every is not None:
            self.optimizer.step(by_name)
            self._local_steps += 1
            if self._local_steps % cfg.average_every == 0:
                self.average_parameters()
            return
        if not self._should_sync:
            self.optimizer.step(by_name)
            return
        self._accumulate(by_name)
        self._passes += 1
        if self._passes < cfg.backward_passes_per_step:
            return
        self.optimizer.step(self._reduce_pending())

    def synchronize(self, grads: Mapping[str, Any] | Sequence[Any] | None = None) -> dict[str, Any]:
        """Average ``grads`` (plus any gradients accumulated by earlier ``step`` calls) across
        ranks now and return them as a dict name -> array, without updating.

        For gradient clipping::

            avg = opt.synchronize(grads)
            clip(avg)
            with opt.skip_synchronize():
                opt.step(avg)
        """
        if self._cfg.average_every is not None:
            raise RuntimeError("synchronize() averages gradients; with average_every the "
                               "parameters are averaged instead (see average_parameters())")
        if grads is not None:
            self._accumulate(self.optimizer._normalize_grads(grads))
        return self._reduce_pending()

    @contextlib.contextmanager
    def skip_synchronize(self) -> Iterator[None]:
        """Within this block ``step(grads)`` applies ``grads`` without averaging them."""
        self._should_sync = False
        try:
            yield
        finally:
            self._should_sync = True

    def average_parameters(self) -> None:
        """Replace every parameter by its average across ranks, in place (on the device for
        CuPy parameters)."""
        average_parameters(self.optimizer.params.items(), "average.", self._cfg.process_set)

    # ------------------------------------------------------------------ internals

    def _accumulate(self, by_name: Mapping[str, Any]) -> None:
        params = self.optimizer.params
        for name, g in by_name.items():
            if g is None:
                continue
            p = params[name]
            g = array_namespace(p).asarray(g, dtype=p.dtype)
            if g.shape != p.shape:
                raise ValueError(f"gradient for {name!r} has shape {g.shape}, parameter has "
                                 f"{p.shape}")
            acc = self._pending.get(name)
            if acc is None:
                self._pending[name] = g.copy()  # never modify the caller's gradient
            else:
                acc += g

    def _reduce_pending(self) -> dict[str, Any]:
        """Allreduce the accumulated gradients (zeros where a rank has none); reset."""
        cfg = self._cfg
        params = self.optimizer.params
        pending = self._pending
        self._pending = {}
        self._passes = 0
        submitted = []
        for name in sorted(params):  # every rank submits every parameter, in the same order
            p = params[name]
            g = pending.get(name)
            if g is None:  # CuPy gradients are reduced on the device
                g = array_namespace(p).zeros(p.shape, p.dtype)
            wire, ctx = cfg.compression.compress(g)
            h = allreduce_async(wire, op=cfg.op, name=f"grad.{name}", prescale_factor=cfg.prescale,
                                postscale_factor=cfg.postscale, process_set=cfg.process_set)
            submitted.append((name, h, ctx))
        return {name: cfg.compression.decompress(h.wait(), ctx) for name, h, ctx in submitted}
