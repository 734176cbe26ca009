"""The optimizer base class: parameters, per-parameter state, step counts, state_dict.

Subclasses supply three things: ``_validate`` (hyperparameter checks, run at construction and
on ``load_state_dict``), ``_init_state`` (fresh state for one parameter) and ``_update`` (the
update rule for one parameter, written once for NumPy and CuPy through ``xp``).
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import Any

import numpy

__all__ = ["Optimizer", "array_namespace", "is_array", "lerp_"]

# Keys of a state_dict, and of each parameter's state that is not an array.
_STEP = "step"


def _is_cupy(x: object) -> bool:
    return type(x).__module__.startswith("cupy")


def array_namespace(x: object) -> ModuleType:
    """The array module for ``x``: ``cupy`` for a CuPy array, else ``numpy``.

    CuPy is imported only when ``x`` is a CuPy array, so NumPy-only installs never need it.
    """
    if _is_cupy(x):
        import cupy

        return cupy
    return numpy


def is_array(x: object) -> bool:
    """True for a NumPy ``ndarray`` or a CuPy ``ndarray`` (without importing CuPy)."""
    if isinstance(x, numpy.ndarray):
        return True
    return _is_cupy(x) and type(x).__name__ == "ndarray"


def _check_float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    return float(value)


class Optimizer:
    """Base class of the ringred optimizers.

    Attributes:
        params: name -> parameter array (the caller's own arrays, updated in place).
        param_names: parameter names in order (the order of the list form of ``step``).
        hparams: hyperparameters (read at every ``step``, so e.g. ``opt.lr = x`` takes
            effect at the next step).
        state: name -> dict of per-parameter state (arrays of the parameter's dtype, and
            the Python int ``"step"``: how many updates that parameter has received).
        step_count: how many times ``step`` has been called.
    """

    def __init__(
        self,
        params: Mapping[str, Any] | Sequence[Any],
        hparams: Mapping[str, Any],
    ) -> None:
        """Register ``params`` (dict or list of arrays) and validate ``hparams``."""
        self.params: dict[str, Any] = _normalize_params(params)
        self.param_names: list[str] = list(self.params)
        self.hparams: dict[str, Any] = self._validate(dict(hparams))
        self.state: dict[str, dict[str, Any]] = {}
        self.step_count: int = 0

    # ------------------------------------------------------------------ subclass hooks

    @classmethod
    def _validate(cls, hp: dict[str, Any]) -> dict[str, Any]:
        """Check and normalise hyperparameters; raise ValueError like torch.optim."""
        hp["lr"] = _check_float("lr", hp["lr"])
        if not 0.0 <= hp["lr"]:
            raise ValueError(f"Invalid learning rate: {hp['lr']}")
        hp["maximize"] = bool(hp.get("maximize", False))
        return hp

    def _init_state(self, p: Any, xp: ModuleType) -> dict[str, Any]:
        """Fresh state for parameter ``p`` (before its first update)."""
        return {_STEP: 0}

    def _update(self, p: Any, g: Any, st: dict[str, Any], xp: ModuleType) -> None:
        """Apply one update to ``p`` in place; ``st["step"]`` is already incremented."""
        raise NotImplementedError

    # ------------------------------------------------------------------ public API

    @property
    def lr(self) -> float:
        """The learning rate; assigning it changes the rate used by the next ``step``."""
        return self.hparams["lr"]

    @lr.setter
    def lr(self, value: float) -> None:
        value = _check_float("lr", value)
        if not 0.0 <= value:
            raise ValueError(f"Invalid learning rate: {value}")
        self.hparams["lr"] = value

    def step(self, grads: Mapping[str, Any] | Sequence[Any]) -> None:
        """Apply one update to every parameter that has a gradient.

        ``grads`` is a dict keyed like ``params`` (a missing key or a ``None`` value skips
        that parameter, as a ``None`` ``.grad`` does in torch), or a list/tuple in the order
        of ``param_names`` (``None`` entries skip).  Each gradient must have its parameter's
        shape; it is converted to the parameter's array type and dtype and never modified.
        The parameters are updated in place.
        """
        by_name = self._normalize_grads(grads)
        for name in self.param_names:
            g = by_name.get(name)
            if g is None:
                continue
            p = self.params[name]
            xp = array_namespace(p)
            g = xp.asarray(g, dtype=p.dtype)
            if g.shape != p.shape:
                raise ValueError(
                    f"gradient for {name!r} has shape {g.shape}, parameter has {p.shape}"
                )
            st = self.state.get(name)
            if st is None:
                st = self.state[name] = self._init_state(p, xp)
            st[_STEP] += 1
            self._update(p, g, st, xp)
        self.step_count += 1

    def state_dict(self) -> dict[str, Any]:
        """A plain nested dict of copies: hyperparameters, step counts and per-parameter state.

        Format::

            {"optimizer": "Adam",                 # class name
             "hparams": {"lr": 0.001, ...},       # Python scalars / tuples
             "param_names": ["w", "b", ...],
             "step_count": 10,                    # calls to step()
             "state": {"w": {"step": 10,          # updates applied to "w"
                             "exp_avg": <array copy>, ...}, ...}}

        Arrays are copies in the parameter's array type (NumPy or CuPy) and dtype.
        """
        state: dict[str, dict[str, Any]] = {}
        for name, st in self.state.items():
            state[name] = {k: (v.copy() if is_array(v) else v) for k, v in st.items()}
        return {
            "optimizer": type(self).__name__,
            "hparams": dict(self.hparams),
            "param_names": list(self.param_names),
            "step_count": self.step_count,
            "state": state,
        }

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore what ``state_dict`` returned (possibly from another process or device).

        Hyperparameters are validated and replaced; the per-parameter state replaces the
        current one.  State arrays are copied into the existing state arrays when those have
        the same key and shape, otherwise new arrays of the parameter's array type and dtype
        are made; nothing in ``state_dict`` is aliased.
        """
        kind = state_dict.get("optimizer", type(self).__name__)
        if kind != type(self).__name__:
            raise ValueError(f"state_dict is for {kind}, not {type(self).__name__}")
        names = list(state_dict.get("param_names", self.param_names))
        if sorted(names) != sorted(self.param_names):
            raise ValueError(
                f"state_dict parameters {names} do not match this optimizer's {self.param_names}"
            )
        hp = dict(self.hparams)
        hp.update(state_dict["hparams"])
        hp = self._validate(hp)
        new_state: dict[str, dict[str, Any]] = {}
        for name, saved in state_dict["state"].items():
            if name not in self.params:
                raise ValueError(f"state_dict has state for unknown parameter {name!r}")
            p = self.params[name]
            xp = array_namespace(p)
            old = self.state.get(name, {})
            st: dict[str, Any] = {}
            for key, value in saved.items():
                if key == _STEP:
                    st[key] = int(value)
                elif not hasattr(value, "shape"):
                    st[key] = value  # a Python scalar or None
                else:
                    if tuple(value.shape) != p.shape:
                        raise ValueError(
                            f"state {key!r} of {name!r} has shape {tuple(value.shape)}, "
                            f"parameter has {p.shape}"
                        )
                    cur = old.get(key)
                    if is_array(cur) and cur.shape == p.shape and cur.dtype == p.dtype:
                        cur[...] = xp.asarray(value, dtype=p.dtype)
                        st[key] = cur
                    else:
                        st[key] = xp.array(value, dtype=p.dtype, copy=True)
            new_state[name] = st
        self.hparams = hp
        self.state = new_state
        self.step_count = int(state_dict.get("step_count", 0))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.hparams.items())
        return f"{type(self).__name__}({len(self.params)} params, {args})"

    # ------------------------------------------------------------------ helpers

    def _normalize_grads(self, grads: Mapping[str, Any] | Sequence[Any]) -> dict[str, Any]:
        if isinstance(grads, Mapping):
            unknown = [k for k in grads if k not in self.params]
            if unknown:
                raise KeyError(f"gradients for unknown parameters: {unknown}")
            return dict(grads)
        if isinstance(grads, Sequence) and not isinstance(grads, str | bytes):
            if len(grads) != len(self.param_names):
                raise ValueError(
                    f"got {len(grads)} gradients for {len(self.param_names)} parameters"
                )
            return dict(zip(self.param_names, grads, strict=True))
        raise TypeError("grads must be a dict name -> array or a list/tuple of arrays")


def _normalize_params(params: Mapping[str, Any] | Sequence[Any]) -> dict[str, Any]:
    if isinstance(params, Mapping):
        items = [(str(k), v) for k, v in params.items()]
    elif isinstance(params, Sequence) and not isinstance(params, str | bytes):
        items = [(str(i), v) for i, v in enumerate(params)]
    else:
        raise TypeError("params must be a dict name -> array or a list/tuple of arrays")
    if not items:
        raise ValueError("optimizer got an empty parameter list")
    seen: set[int] = set()
    out: dict[str, Any] = {}
    for name, p in items:
        if not is_array(p):
            raise TypeError(
                f"parameter {name!r} must be a NumPy or CuPy ndarray (updated in place), "
                f"got {type(p).__name__}"
            )
        if p.dtype.kind != "f":
            raise TypeError(f"parameter {name!r} must have a floating dtype, got {p.dtype}")
        if id(p) in seen:
            raise ValueError(f"parameter {name!r} appears more than once")
        if isinstance(p, numpy.ndarray) and not p.flags.writeable:
            raise ValueError(f"parameter {name!r} is read-only")
        seen.add(id(p))
        out[name] = p
    return out


def lerp_(start: Any, end: Any, weight: float) -> None:
    """``start += weight * (end - start)`` in place, in the two forms torch's ``lerp_`` uses.

    torch evaluates ``start + weight * (end - start)`` when ``|weight| < 0.5`` and
    ``end - (end - start) * (1 - weight)`` otherwise (better rounding near ``weight = 1``).
    """
    if abs(weight) < 0.5:
        start += weight * (end - start)
    else:
        start[...] = end - (end - start) * (1 - weight)
