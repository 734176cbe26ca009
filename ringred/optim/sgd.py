"""Stochastic gradient descent with momentum, dampening, Nesterov and weight decay."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import Any

from .base import Optimizer, _check_float

__all__ = ["SGD"]


class SGD(Optimizer):
    """SGD, the update of ``torch.optim.SGD`` (single-tensor path), operation for operation.

    Per parameter, with gradient ``g``::

        g = -g                                  if maximize
        g = g + weight_decay * p                if weight_decay != 0
        if momentum != 0:
            buf = copy(g)                        on the first update
            buf = momentum * buf + (1 - dampening) * g   afterwards
            g = g + momentum * buf               if nesterov
            g = buf                              otherwise
        p = p - lr * g

    State: ``"momentum_buffer"`` (only when momentum != 0) and ``"step"``.
    """

    def __init__(
        self,
        params: Mapping[str, Any] | Sequence[Any],
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        """Create the optimizer (defaults as torch.optim.SGD; nesterov needs momentum > 0
        and dampening == 0)."""
        super().__init__(
            params,
            {
                "lr": lr,
                "momentum": momentum,
                "dampening": dampening,
                "weight_decay": weight_decay,
                "nesterov": nesterov,
                "maximize": maximize,
            },
        )

    @classmethod
    def _validate(cls, hp: dict[str, Any]) -> dict[str, Any]:
        hp = super()._validate(hp)
        for key in ("momentum", "dampening", "weight_decay"):
            hp[key] = _check_float(key, hp[key])
        hp["nesterov"] = bool(hp["nesterov"])
        if hp["momentum"] < 0.0:
            raise ValueError(f"Invalid momentum value: {hp['momentum']}")
        if hp["weight_decay"] < 0.0:
            raise ValueError(f"Invalid weight_decay value: {hp['weight_decay']}")
        if hp["nesterov"] and (hp["momentum"] <= 0 or hp["dampening"] != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        return hp

    def _update(self, p: Any, g: Any, st: dict[str, Any], xp: ModuleType) -> None:
        hp = self.hparams
        lr, momentum, wd = hp["lr"], hp["momentum"], hp["weight_decay"]
        if hp["maximize"]:
            g = -g
        if wd != 0:
            g = g + wd * p
        if momentum != 0:
            buf = st.get("momentum_buffer")
            if buf is None:
                buf = st["momentum_buffer"] = xp.array(g, copy=True)
            else:
                buf *= momentum
                buf += (1 - hp["dampening"]) * g
            if hp["nesterov"]:
                g = g + momentum * buf
            else:
                g = buf
        p += -lr * g
