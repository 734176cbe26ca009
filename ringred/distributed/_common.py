"""Argument checks and the parameter averaging shared by the NumPy and torch wrappers."""

from __future__ import annotations

import operator
from collections.abc import Iterable
from typing import Any

from ..asyncapi import allreduce_async
from ..ops import ReduceOp
from ..process_sets import ProcessSet
from .compression import Compressor, NoneCompressor


class Settings:
    """Validated DistributedOptimizer options."""

    __slots__ = ("compression", "backward_passes_per_step", "op", "prescale", "postscale",
                 "average_every", "process_set", "sparse_as_dense", "member", "horovod")

    def __init__(
        self,
        compression: type[Compressor] | Compressor,
        backward_passes_per_step: int,
        op: ReduceOp,
        gradient_predivide_factor: float,
        average_every: int | None,
        process_set: ProcessSet | None = None,
        sparse_as_dense: bool = False,
        horovod: bool = False,
    ) -> None:
        if not (isinstance(compression, type) and issubclass(compression, Compressor)) and not (
            isinstance(compression, Compressor)
        ):
            raise TypeError(
                "compression must be ringred.Compression.none, .fp16 or .bf16 (or a Compressor), "
                f"not {compression!r}"
            )
        bpps = operator.index(backward_passes_per_step)
        if bpps < 1:
            raise ValueError(f"backward_passes_per_step must be >= 1, got {bpps}")
        op = ReduceOp(op)
        if op not in (ReduceOp.Average, ReduceOp.Sum):
            raise ValueError(
                f"op must be ringred.Average or ringred.Sum for gradients, not {op.name}"
            )
        f = float(gradient_predivide_factor)
        if not f > 0.0:
            raise ValueError(f"gradient_predivide_factor must be > 0, got {f}")
        if f != 1.0 and op is not ReduceOp.Average:
            raise ValueError("gradient_predivide_factor needs op=ringred.Average")
        if average_every is not None:
            average_every = operator.index(average_every)
            if average_every < 1:
                raise ValueError(f"average_every must be >= 1, got {average_every}")
            if bpps != 1:
                raise ValueError(
                    "average_every (periodic parameter averaging) does no gradient allreduce; "
                    "accumulate locally instead of passing backward_passes_per_step"
                )
            if compression is not NoneCompressor:
                raise ValueError("compression applies to gradients; average_every averages "
                                 "parameters, which are sent uncompressed")
        if process_set is not None and not isinstance(process_set, ProcessSet):
            raise TypeError(f"process_set must be a ringred.ProcessSet, not {process_set!r}")
        if process_set is not None and process_set.ranks is None:
            process_set = None  # the global set
        # horovod: made by ringred.torch (Horovod's behaviour where ringred's own differs)
        self.horovod = horovod
        # False: this rank is not in process_set and steps on its own gradients (Horovod's
        # behaviour, ringred.torch); ringred's own wrapper refuses non-members instead
        self.member = True
        if process_set is not None:
            if horovod and process_set.process_set_id is not None \
                    and not process_set.included():
                self.member = False
            else:
                process_set._context()  # registered, and this rank a member: else ValueError
        self.compression = compression
        self.backward_passes_per_step = bpps
        self.op = op
        # Average: the collective itself multiplies by 1/size after postscale, so f/size overall.
        self.prescale = 1.0 / f
        self.postscale = f
        self.average_every = average_every
        # None: every rank; else gradients (or parameters) are averaged within this set
        self.process_set = process_set
        # sparse gradients: densified and allreduced (True) or allgathered (False)
        self.sparse_as_dense = bool(sparse_as_dense)


def average_parameters(named: Iterable[tuple[str, Any]], prefix: str,
                       process_set: ProcessSet | None = None) -> None:
    """Replace every parameter by its average across the ranks of ``process_set`` (default:
    all), in place (sorted by name)."""
    handles = [
        allreduce_async(t, op=ReduceOp.Average, name=f"{prefix}{name}", out=t,
                        process_set=process_set)
        for name, t in sorted(named, key=lambda kv: kv[0])
    ]
    for h in handles:
        h.wait()
