"""Adam and AdamW (with the AMSGrad variant)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import Any

from .base import Optimizer, _check_float, lerp_

__all__ = ["Adam", "AdamW"]


class Adam(Optimizer):
    """Adam, the update of ``torch.optim.Adam`` (single-tensor, non-capturable path).

    Per parameter, at step ``t`` (1, 2, ...), with gradient ``g``::

        g = -g                                          if maximize
        p = p * (1 - lr * weight_decay)                 if decoupled (AdamW)
        g = g + weight_decay * p                        elif weight_decay != 0
        m = lerp(m, g, 1 - beta1)                       # m + (1 - beta1) * (g - m)
        v = beta2 * v + (1 - beta2) * g * g
        bias_correction1 = 1 - beta1 ** t               # Python floats
        bias_correction2 = 1 - beta2 ** t
        step_size = lr / bias_correction1
        vmax = max(vmax, v); v_used = vmax              if amsgrad, else v_used = v
        denom = sqrt(v_used) / bias_correction2 ** 0.5 + eps
        p = p - step_size * m / denom

    State: ``"step"``, ``"exp_avg"`` (m), ``"exp_avg_sq"`` (v) and, with amsgrad,
    ``"max_exp_avg_sq"`` (vmax).
    """

    _decoupled: bool = False

    def __init__(
        self,
        params: Mapping[str, Any] | Sequence[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        """Create the optimizer (defaults as torch.optim.Adam)."""
        super().__init__(
            params,
            {
                "lr": lr,
                "betas": betas,
                "eps": eps,
                "weight_decay": weight_decay,
                "amsgrad": amsgrad,
                "maximize": maximize,
            },
        )

    @classmethod
    def _validate(cls, hp: dict[str, Any]) -> dict[str, Any]:
        hp = super()._validate(hp)
        hp["eps"] = _check_float("eps", hp["eps"])
        hp["weight_decay"] = _check_float("weight_decay", hp["weight_decay"])
        hp["amsgrad"] = bool(hp["amsgrad"])
        betas = tuple(hp["betas"])
        if len(betas) != 2:
            raise ValueError(f"betas must be a pair, got {hp['betas']!r}")
        beta1, beta2 = (_check_float(f"betas[{i}]", b) for i, b in enumerate(betas))
        if not 0.0 <= hp["eps"]:
            raise ValueError(f"Invalid epsilon value: {hp['eps']}")
        if not 0.0 <= beta1 < 1.0:
            raise ValueError(f"Invalid beta parameter at index 0: {beta1}")
        if not 0.0 <= beta2 < 1.0:
            raise ValueError(f"Invalid beta parameter at index 1: {beta2}")
        if not 0.0 <= hp["weight_decay"]:
            raise ValueError(f"Invalid weight_decay value: {hp['weight_decay']}")
        hp["betas"] = (beta1, beta2)
        return hp

    def _init_state(self, p: Any, xp: ModuleType) -> dict[str, Any]:
        st: dict[str, Any] = {
            "step": 0,
            "exp_avg": xp.zeros_like(p),
            "exp_avg_sq": xp.zeros_like(p),
        }
        if self.hparams["amsgrad"]:
            st["max_exp_avg_sq"] = xp.zeros_like(p)
        return st

    def _update(self, p: Any, g: Any, st: dict[str, Any], xp: ModuleType) -> None:
        hp = self.hparams
        lr, wd, eps = hp["lr"], hp["weight_decay"], hp["eps"]
        beta1, beta2 = hp["betas"]
        if hp["maximize"]:
            g = -g
        if wd != 0:
            if self._decoupled:
                p *= 1 - lr * wd
            else:
                g = g + wd * p
        exp_avg, exp_avg_sq = st["exp_avg"], st["exp_avg_sq"]
        lerp_(exp_avg, g, 1 - beta1)
        exp_avg_sq *= beta2
        exp_avg_sq += (1 - beta2) * g * g

        step = float(st["step"])  # torch keeps a float tensor and reads it with .item()
        bias_correction1 = 1 - beta1**step
        bias_correction2 = 1 - beta2**step
        step_size = lr / bias_correction1
        bias_correction2_sqrt = bias_correction2**0.5

        if hp["amsgrad"]:
            vmax = st.get("max_exp_avg_sq")
            if vmax is None:  # amsgrad switched on after the first step
                vmax = st["max_exp_avg_sq"] = xp.zeros_like(p)
            xp.maximum(vmax, exp_avg_sq, out=vmax)
            denom = xp.sqrt(vmax) / bias_correction2_sqrt + eps
        else:
            denom = xp.sqrt(exp_avg_sq) / bias_correction2_sqrt + eps
        p += -step_size * exp_avg / denom


class AdamW(Adam):
    """AdamW: Adam with decoupled weight decay, as ``torch.optim.AdamW``.

    Identical to :class:`Adam` except that weight decay is applied to the parameter
    before the moment updates, ``p = p * (1 - lr * weight_decay)``, instead of being added
    to the gradient; the default ``weight_decay`` is 1e-2 as in torch.
    """

    _decoupled = True

    def __init__(
        self,
        params: Mapping[str, Any] | Sequence[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        """Create the optimizer (defaults as torch.optim.AdamW)."""
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize)
