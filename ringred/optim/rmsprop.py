"""RMSProp (plain or centered, with optional momentum and weight decay)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import Any

from .base import Optimizer, _check_float, lerp_

__all__ = ["RMSProp"]


class RMSProp(Optimizer):
    """RMSProp, the update of ``torch.optim.RMSprop`` (single-tensor path).

    Per parameter, with gradient ``g``::

        g = -g                                          if maximize
        g = g + weight_decay * p                        if weight_decay != 0
        v = alpha * v + (1 - alpha) * g * g
        if centered:
            a = lerp(a, g, 1 - alpha)                   # a + (1 - alpha) * (g - a)
            avg = sqrt(v - a * a) + eps
        else:
            avg = sqrt(v) + eps
        if momentum > 0:
            buf = momentum * buf + g / avg              # buf starts at zero
            p = p - lr * buf
        else:
            p = p - lr * g / avg

    State: ``"step"``, ``"square_avg"`` (v), ``"grad_avg"`` (a, if centered) and
    ``"momentum_buffer"`` (buf, if momentum > 0).
    """

    def __init__(
        self,
        params: Mapping[str, Any] | Sequence[Any],
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        """Create the optimizer (defaults as torch.optim.RMSprop)."""
        super().__init__(
            params,
            {
                "lr": lr,
                "alpha": alpha,
                "eps": eps,
                "weight_decay": weight_decay,
                "momentum": momentum,
                "centered": centered,
                "maximize": maximize,
            },
        )

    @classmethod
    def _validate(cls, hp: dict[str, Any]) -> dict[str, Any]:
        hp = super()._validate(hp)
        for key in ("alpha", "eps", "weight_decay", "momentum"):
            hp[key] = _check_float(key, hp[key])
        hp["centered"] = bool(hp["centered"])
        if not 0.0 <= hp["eps"]:
            raise ValueError(f"Invalid epsilon value: {hp['eps']}")
        if not 0.0 <= hp["momentum"]:
            raise ValueError(f"Invalid momentum value: {hp['momentum']}")
        if not 0.0 <= hp["weight_decay"]:
            raise ValueError(f"Invalid weight_decay value: {hp['weight_decay']}")
        if not 0.0 <= hp["alpha"]:
            raise ValueError(f"Invalid alpha value: {hp['alpha']}")
        return hp

    def _init_state(self, p: Any, xp: ModuleType) -> dict[str, Any]:
        st: dict[str, Any] = {"step": 0, "square_avg": xp.zeros_like(p)}
        if self.hparams["momentum"] > 0:
            st["momentum_buffer"] = xp.zeros_like(p)
        if self.hparams["centered"]:
            st["grad_avg"] = xp.zeros_like(p)
        return st

    def _update(self, p: Any, g: Any, st: dict[str, Any], xp: ModuleType) -> None:
        hp = self.hparams
        lr, alpha, eps, wd, momentum = (
            hp["lr"],
            hp["alpha"],
            hp["eps"],
            hp["weight_decay"],
            hp["momentum"],
        )
        if hp["maximize"]:
            g = -g
        if wd != 0:
            g = g + wd * p
        square_avg = st["square_avg"]
        square_avg *= alpha
        square_avg += (1 - alpha) * g * g
        if hp["centered"]:
            grad_avg = st.get("grad_avg")
            if grad_avg is None:  # centered switched on after the first step
                grad_avg = st["grad_avg"] = xp.zeros_like(p)
            lerp_(grad_avg, g, 1 - alpha)
            avg = xp.sqrt(square_avg - grad_avg * grad_avg)
        else:
            avg = xp.sqrt(square_avg)
        avg = avg + eps
        if momentum > 0:
            buf = st.get("momentum_buffer")
            if buf is None:  # momentum switched on after the first step
                buf = st["momentum_buffer"] = xp.zeros_like(p)
            buf *= momentum
            buf += g / avg
            p += -lr * buf
        else:
            p += -lr * g / avg
