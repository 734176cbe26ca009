"""DistributedOptimizer for ``torch.optim`` optimizers: allreduces start from gradient hooks."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch

from ..asyncapi import Handle, allreduce_async
from ._common import Settings, average_parameters
from .sparse import sparse_allreduce_async

__all__ = ["TorchDistributedOptimizer"]

_SPARSE = object()  # marks a sparse gradient's entry in _handles


class TorchDistributedOptimizer(torch.optim.Optimizer):
    """Wraps a ``torch.optim.Optimizer``; gradients are averaged across ranks as they appear.

    Made by ``ringred.DistributedOptimizer(opt, named_parameters=model.named_parameters())``.
    A hook on every parameter (``register_post_accumulate_grad_hook``) starts that
    gradient's allreduce (in place in ``p.grad``, named after the parameter) as soon as
    backward has accumulated it, so communication overlaps the rest of backward.  ``step()``
    waits for all of them (``synchronize()``) and then calls the wrapped optimizer's
    ``step``.  ``param_groups``, ``state``, ``defaults``, ``state_dict``, ``load_state_dict``
    and ``zero_grad`` are the wrapped optimizer's, so LR schedulers and checkpoints work on
    the wrapper as on the original.

    The class derives from ``torch.optim.Optimizer`` only so that ``isinstance`` checks (LR
    schedulers) accept it; it holds no state of its own and does not call the base
    ``__init__``: everything lives in the wrapped optimizer (``self.optimizer``).
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        cfg: Settings,
        named_parameters: Iterable[tuple[str, torch.Tensor]] | None = None,
    ) -> None:
        # Deliberately no super().__init__(): param_groups/state/defaults are the wrapped ones.
        self.optimizer = optimizer
        self._cfg = cfg
        self._names = _parameter_names(optimizer, named_parameters)
        self._handles: dict[torch.Tensor, tuple[Handle | None, Any, Any]] = {}
        self._delay: dict[torch.Tensor, int] = {}
        self._requires_update: list[torch.Tensor] = []
        self._hooks: list[Any] = []
        self._should_sync = True
        self._synchronized = False
        self._local_steps = 0
        if cfg.average_every is None and cfg.member:
            for group in optimizer.param_groups:
                self._register(group["params"])

    # ------------------------------------------------------------------ delegation

    @property
    def param_groups(self) -> list[dict[str, Any]]:  # type: ignore[override]
        """The wrapped optimizer's parameter groups (LR schedulers edit these)."""
        return self.optimizer.param_groups

    @param_groups.setter
    def param_groups(self, value: list[dict[str, Any]]) -> None:
        self.optimizer.param_groups = value

    @property
    def state(self) -> Any:  # type: ignore[override]
        """The wrapped optimizer's per-parameter state."""
        return self.optimizer.state

    @state.setter
    def state(self, value: Any) -> None:
        self.optimizer.state = value

    @property
    def defaults(self) -> dict[str, Any]:  # type: ignore[override]
        """The wrapped optimizer's default hyperparameters."""
        return self.optimizer.defaults

    @defaults.setter
    def defaults(self, value: dict[str, Any]) -> None:
        self.optimizer.defaults = value

    def __getattr__(self, name: str) -> Any:
        if name == "optimizer":  # not set yet: avoid recursion
            raise AttributeError(name)
        return getattr(self.optimizer, name)

    def __repr__(self) -> str:
        return f"DistributedOptimizer({self.optimizer!r})"

    def state_dict(self) -> dict[str, Any]:  # type: ignore[override]
        """The wrapped optimizer's ``state_dict()``."""
        return self.optimizer.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:  # type: ignore[override]
        """The wrapped optimizer's ``load_state_dict``."""
        self.optimizer.load_state_dict(state_dict)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group to the wrapped optimizer and hook its parameters."""
        self.optimizer.add_param_group(param_group)
        g = len(self.optimizer.param_groups) - 1
        params = self.optimizer.param_groups[g]["params"]
        for i, p in enumerate(params):
            self._names.setdefault(p, f"param.{g}.{i}")
        if self._cfg.average_every is None and self._cfg.member:
            self._register(params)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """The wrapped optimizer's ``zero_grad``; an error while allreduces are pending."""
        if self._handles:
            raise RuntimeError(
                "optimizer.zero_grad() was called after loss.backward() but before "
                "optimizer.step() or optimizer.synchronize(): the gradients' allreduces are "
                "still pending (or, with backward_passes_per_step > 1, being accumulated). "
                "Call zero_grad() before backward or after step()."
            )
        self.optimizer.zero_grad(set_to_none=set_to_none)

    # ------------------------------------------------------------------ hooks

    def _register(self, params: Iterable[torch.Tensor]) -> None:
        for p in params:
            if p.requires_grad and p not in self._delay:
                self._requires_update.append(p)
                self._delay[p] = self._cfg.backward_passes_per_step
                self._hooks.append(p.register_post_accumulate_grad_hook(self._grad_ready))

    def remove_hooks(self) -> None:
        """Detach this wrapper from the parameters (before wrapping them again)."""
        for h in self._hooks:
            h.remove()
        self._hooks.clear()
        self._requires_update.clear()
        self._delay.clear()

    def _grad_ready(self, p: torch.Tensor) -> None:
        """Post-accumulate-grad hook: count the pass; on the k-th, start the allreduce."""
        entry = self._handles.get(p)
        if entry is not None and entry[0] is not None:
            raise RuntimeError(
                f"gradient of {self._names[p]!r} was computed more than "
                f"backward_passes_per_step={self._cfg.backward_passes_per_step} times before "
                "optimizer.step(); raise backward_passes_per_step to accumulate more passes"
            )
        self._synchronized = False
        self._delay[p] -= 1
        if self._delay[p] == 0:
            self._handles[p] = self._submit(p)
        else:
            self._handles[p] = (None, None, None)

    def _submit(self, p: torch.Tensor) -> tuple[Handle, Any, Any]:
        cfg = self._cfg
        grad = p.grad
        if grad.is_sparse:
            return self._submit_sparse(p, grad)
        wire, ctx = cfg.compression.compress(grad)
        h = allreduce_async(wire, op=cfg.op, name=self._names[p], prescale_factor=cfg.prescale,
                            postscale_factor=cfg.postscale, out=wire,
                            process_set=cfg.process_set)
        return h, ctx, wire

    def _submit_sparse(self, p: torch.Tensor, grad: torch.Tensor) -> tuple[Any, Any, Any]:
        """A sparse gradient: allgathered (indices and values), or with sparse_as_dense
        allreduced as a dense tensor; ``synchronize`` puts the sparse result in ``p.grad``."""
        cfg = self._cfg
        if cfg.sparse_as_dense:
            dense = grad.to_dense()
            h = allreduce_async(dense, op=cfg.op, name=self._names[p],
                                prescale_factor=cfg.prescale, postscale_factor=cfg.postscale,
                                out=dense, process_set=cfg.process_set)
            return h, _SPARSE, dense
        return sparse_allreduce_async(grad, self._names[p], cfg.op, cfg.process_set), _SPARSE, None

    @property
    def _parameter_names(self) -> dict[torch.Tensor, str]:
        """Parameter -> the name its gradient's allreduce carries (Horovod's attribute)."""
        return self._names

    # ------------------------------------------------------------------ public API

    def synchronize(self) -> None:
        """Wait until every gradient is averaged across ranks (in ``p.grad``).

        Parameters whose hook has not fired on this rank (no gradient this step, or fewer
        than ``backward_passes_per_step`` passes so far) are submitted now; a parameter with
        no gradient at all contributes zeros, so ranks whose graphs differ do not hang.
        """
        if self._cfg.average_every is not None or not self._cfg.member:
            return
        missing = [p for p in self._requires_update if p not in self._handles]
        for p in sorted(missing, key=self._names.__getitem__):
            if p.grad is None:
                p.grad = torch.zeros_like(p, memory_format=torch.preserve_format)
            self._handles[p] = self._submit(p)
        for p, (h, _ctx, _wire) in list(self._handles.items()):
            if h is None:  # fewer than backward_passes_per_step passes so far
                self._handles[p] = self._submit(p)
        try:
            for p, (h, ctx, wire) in self._handles.items():
                res = h.wait()
                if ctx is _SPARSE:
                    p.grad = res.to_sparse() if not res.is_sparse else res
                elif ctx is not None:
                    p.grad.copy_(self._cfg.compression.decompress(wire, ctx))
        finally:
            for p in self._handles:
                self._delay[p] = self._cfg.backward_passes_per_step
            self._handles.clear()
        self._synchronized = True

    @contextlib.contextmanager
    def skip_synchronize(self) -> Iterator[None]:
        """Within this block ``step()`` does not synchronize (call ``synchronize()`` first).

        For gradient clipping::

            loss.backward()
            opt.synchronize()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            with opt.skip_synchronize():
                opt.step()
        """
        self._should_sync = False
        try:
            yield
        finally:
            self._should_sync = True

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Synchronize (unless inside ``skip_synchronize()``), then the wrapped ``step``.

        With ``average_every=k`` there is no gradient allreduce: the wrapped ``step`` runs on
        local gradients and every k-th call then averages the parameters across ranks.
        """
        if closure is not None:
            raise NotImplementedError(
                "DistributedOptimizer.step(closure) is not supported: run loss.backward() "
                "before step() so the gradient allreduces can start during backward"
            )
        cfg = self._cfg
        if cfg.average_every is not None:
            loss = self.optimizer.step()
            self._local_steps += 1
            if self._local_steps % cfg.average_every == 0:
                self.average_parameters()
            return loss
        if self._should_sync and self._synchronized and not self._handles and cfg.horovod:
            warnings.warn("optimizer.step() called without optimizer.skip_synchronize() "
                          "context after optimizer.synchronize(). ringred does not average "
                          "the gradients a second time, but Horovod does (a slowdown there): "
                          "wrap step() in optimizer.skip_synchronize().", stacklevel=2)
        if self._should_sync and not (self._synchronized and not self._handles):
            self.synchronize()
        loss = self.optimizer.step()
        self._synchronized = False
        return loss

    def average_parameters(self) -> None:
        """Replace every parameter by its average across ranks, in place."""
        if not self._cfg.member:
            return
        named = [
            (self._names[p], p.detach())
            for group in self.optimizer.param_groups
            for p in group["params"]
        ]
        with torch.no_grad():
            average_parameters(named, "average.", self._cfg.process_set)


def _parameter_names(
    optimizer: torch.optim.Optimizer,
    named_parameters: Iterable[tuple[str, torch.Tensor]] | None,
) -> dict[torch.Tensor, str]:
    """Parameter -> allreduce name, identical on every rank."""
    if named_parameters is None:
        return {
            p: f"param.{g}.{i}"
            for g, group in enumerate(optimizer.param_groups)
            for i, p in enumerate(group["params"])
        }
    pairs = list(named_parameters)
    if any(not isinstance(kv, tuple) or len(kv) != 2 for kv in pairs):
        raise ValueError("named_parameters must be (name, parameter) pairs, e.g. "
                         "model.named_parameters()")
    names = [n for n, _ in pairs]
    dups = sorted({n for n in names if names.count(n) > 1})
    if dups:
        raise ValueError(f"named_parameters has duplicate names: {dups}")
    by_param: dict[torch.Tensor, str] = {}
    for n, p in pairs:
        by_param.setdefault(p, str(n))
    unnamed = [
        f"param_groups[{g}]['params'][{i}]"
        for g, group in enumerate(optimizer.param_groups)
        for i, p in enumerate(group["params"])
        if p not in by_param
    ]
    if unnamed:
        raise ValueError(
            "named_parameters was given but does not name these optimizer parameters: "
            + ", ".join(unnamed[:8]) + (" ..." if len(unnamed) > 8 else "")
        )
    return by_param
