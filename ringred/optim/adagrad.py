"""Adagrad (with learning-rate decay, initial accumulator value and weight decay)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import Any

from .base import Optimizer, _check_float, array_namespace

__all__ = ["Adagrad"]


class Adagrad(Optimizer):
    """Adagrad, the update of ``torch.optim.Adagrad`` (dense single-tensor path).

    Per parameter, at step ``t`` (1, 2, ...), with gradient ``g``::

        g = -g                                          if maximize
        g = g + weight_decay * p                        if weight_decay != 0
        clr = lr / (1 + (t - 1) * lr_decay)             # Python float
        s = s + g * g                                   # s starts at initial_accumulator_value
        p = p - clr * g / (sqrt(s) + eps)

    State: ``"step"`` and ``"sum"`` (s).  As in torch, the state of every parameter is
    created when the optimizer is constructed.
    """

    def __init__(
        self,
        params: Mapping[str, Any] | Sequence[Any],
        lr: float = 1e-2,
        lr_decay: float = 0.0,
        weight_decay: float = 0.0,
        initial_accumulator_value: float = 0.0,
        eps: float = 1e-10,
        *,
        maximize: bool = False,
    ) -> None:
        """Create the optimizer (defaults as torch.optim.Adagrad)."""
        super().__init__(
            params,
            {
                "lr": lr,
                "lr_decay": lr_decay,
                "weight_decay": weight_decay,
                "initial_accumulator_value": initial_accumulator_value,
                "eps": eps,
                "maximize": maximize,
            },
        )
        for name, p in self.params.items():
            self.state[name] = self._init_state(p, array_namespace(p))

    @classmethod
    def _validate(cls, hp: dict[str, Any]) -> dict[str, Any]:
        hp = super()._validate(hp)
        for key in ("lr_decay", "weight_decay", "initial_accumulator_value", "eps"):
            hp[key] = _check_float(key, hp[key])
        if not 0.0 <= hp["lr_decay"]:
            raise ValueError(f"Invalid lr_decay value: {hp['lr_decay']}")
        if not 0.0 <= hp["weight_decay"]:
            raise ValueError(f"Invalid weight_decay value: {hp['weight_decay']}")
        if not 0.0 <= hp["initial_accumulator_value"]:
            raise ValueError(
                f"Invalid initial_accumulator_value value: {hp['initial_accumulator_value']}"
            )
        if not 0.0 <= hp["eps"]:
            raise ValueError(f"Invalid epsilon value: {hp['eps']}")
        return hp

    def _init_state(self, p: Any, xp: ModuleType) -> dict[str, Any]:
        return {"step": 0, "sum": xp.full_like(p, self.hparams["initial_accumulator_value"])}

    def _update(self, p: Any, g: Any, st: dict[str, Any], xp: ModuleType) -> None:
        hp = self.hparams
        if hp["maximize"]:
            g = -g
        if hp["weight_decay"] != 0:
            g = g + hp["weight_decay"] * p
        step = float(st["step"])  # torch keeps a float tensor and reads it with .item()
        clr = hp["lr"] / (1 + (step - 1) * hp["lr_decay"])
        state_sum = st["sum"]
        state_sum += g * g
        std = xp.sqrt(state_sum) + hp["eps"]
        p += -clr * g / std
