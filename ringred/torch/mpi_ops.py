"""Horovod's torch collectives on ringred: same names, signatures, defaults, autograd."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

import ringred
from ringred.distributed import sparse as _sparse
from ringred.distributed.compression import Compression
from ringred.errors import RingredError
from ringred.ops import ReduceOp
from ringred.process_sets import ProcessSet, context_of, global_process_set

Average = ReduceOp.Average
Sum = ReduceOp.Sum
Min = ReduceOp.Min
Max = ReduceOp.Max
Product = ReduceOp.Product
Adasum = "Adasum"  # recognised so that passing it gives a clear error

HorovodInternalError = RingredError


def _op(op: Any, average: bool | None) -> ReduceOp:
    if op is not None and average is not None:
        raise ValueError("the op parameter supersedes average; specify only one of them")
    if type(op) is ReduceOp:  # the common case, checked first: no enum call
        return op
    if op is None:
        return Sum if average is False else Average
    if op == Adasum:
        raise NotImplementedError("Adasum is not implemented by ringred; use Average or Sum")
    return ReduceOp(op)


def _ps(process_set: ProcessSet | None) -> ProcessSet | None:
    return None if process_set is None or process_set.ranks is None else process_set


def _set_size(process_set: ProcessSet | None) -> int:
    return (process_set or global_process_set).size()


# Like Horovod's, these collectives run on the background engine once it is running (init()
# starts it for the global set): a rank that has joined then takes part (allreduce) or
# every rank gets the error (allgather, broadcast), names pair tensors across ranks, and
# shapes are checked.  Before that (a process set without asynchronous calls yet) they use
# ringred's synchronous path.
def _engine_running(process_set: ProcessSet | None) -> bool:
    return context_of(process_set).engine is not None


def _allreduce(x: Any, **kw: Any) -> Any:
    if _engine_running(kw.get("process_set")):
        return ringred.allreduce_async(x, **kw).wait()
    return ringred.allreduce(x, **kw)


def _grouped_allreduce(xs: list, **kw: Any) -> Any:
    if _engine_running(kw.get("process_set")):
        return ringred.grouped_allreduce_async(xs, **kw).wait()
    return ringred.grouped_allreduce(xs, **kw)


def _allgather(x: Any, **kw: Any) -> Any:
    if _engine_running(kw.get("process_set")):
        return ringred.allgather_async(x, **kw).wait()
    return ringred.allgather(x, **kw)


def _broadcast(x: Any, root_rank: int, **kw: Any) -> Any:
    if _engine_running(kw.get("process_set")):
        return ringred.broadcast_async(x, root_rank, **kw).wait()
    return ringred.broadcast(x, root_rank, **kw)


def _reducescatter(x: Any, **kw: Any) -> Any:
    if _engine_running(kw.get("process_set")):
        return ringred.reducescatter_async(x, **kw).wait()
    return ringred.reducescatter(x, **kw)


# ---------------------------------------------------------------- allreduce


class _Allreduce(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tensor, name, op, pre, post, process_set):  # type: ignore[override]
        ctx.op, ctx.pre, ctx.post, ctx.ps = op, pre, post, process_set
        return _allreduce(tensor, op=op, name=name, prescale_factor=pre,
                                 postscale_factor=post, process_set=_ps(process_set))

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        g = _allreduce(grad.contiguous(), op=ctx.op, prescale_factor=ctx.pre,
                              postscale_factor=ctx.post, process_set=_ps(ctx.ps))
        return g, None, None, None, None, None


def allreduce(tensor: torch.Tensor, average: bool | None = None, name: str | None = None,
              compression: Any = Compression.none, op: Any = None,
              prescale_factor: float = 1.0, postscale_factor: float = 1.0,
              process_set: ProcessSet = global_process_set) -> torch.Tensor:
    """Average (or reduce with ``op``) ``tensor`` over all ranks; differentiable."""
    op = _op(op, average)
    t, cctx = compression.compress(tensor)
    out = _Allreduce.apply(t, name, op, prescale_factor, postscale_factor, process_set)
    return compression.decompress(out, cctx)


def allreduce_(tensor: torch.Tensor, average: bool | None = None, name: str | None = None,
               op: Any = None, prescale_factor: float = 1.0, postscale_factor: float = 1.0,
               process_set: ProcessSet = global_process_set) -> torch.Tensor:
    """In-place allreduce; returns ``tensor``."""
    _allreduce(tensor.data, op=_op(op, average), name=name, prescale_factor=prescale_factor,
                      postscale_factor=postscale_factor, out=tensor.data,
                      process_set=_ps(process_set))
    return tensor


def allreduce_async(tensor: torch.Tensor, average: bool | None = None, name: str | None = None,
                    op: Any = None, prescale_factor: float = 1.0, postscale_factor: float = 1.0,
                    process_set: ProcessSet = global_process_set) -> Any:
    """Start an allreduce; returns a handle for ``poll`` / ``synchronize``."""
    return ringred.allreduce_async(tensor.detach(), op=_op(op, average), name=name,
                                   prescale_factor=prescale_factor,
                                   postscale_factor=postscale_factor,
                                   **_ps_kw(process_set))


def allreduce_async_(tensor: torch.Tensor, average: bool | None = None, name: str | None = None,
                     op: Any = None, prescale_factor: float = 1.0, postscale_factor: float = 1.0,
                     process_set: ProcessSet = global_process_set) -> Any:
    """Start an in-place allreduce; ``synchronize`` returns ``tensor``."""
    # out=tensor: the handle's result is the tensor itself (no wrapper, no .data view); a
    # tensor that requires grad goes as .data (no autograd in-place checks on any path)
    t = tensor.data if tensor.requires_grad else tensor
    h = ringred.allreduce_async(t, op=_op(op, average), name=name,
                                prescale_factor=prescale_factor, postscale_factor=postscale_factor,
                                out=t, **_ps_kw(process_set))
    return h if t is tensor else _InPlace(h, tensor)


def _ps_kw(process_set: ProcessSet | None) -> dict:
    ps = _ps(process_set)
    return {} if ps is None else {"process_set": ps}


class _InPlace:
    """A handle whose result is the caller's own tensor (in-place ops)."""

    def __init__(self, handle: Any, result: Any):
        self.handle, self.result = handle, result

    def wait(self, timeout: float | None = None) -> Any:
        self.handle.wait(timeout)
        return self.result

    def done(self) -> bool:
        return self.handle.done()


class _Grouped(torch.autograd.Function):
    @staticmethod
    def forward(ctx, name, op, pre, post, process_set, *tensors):  # type: ignore[override]
        ctx.op, ctx.pre, ctx.post, ctx.ps = op, pre, post, process_set
        return tuple(_grouped_allreduce(list(tensors), op=op, name=name,
                                               prescale_factor=pre, postscale_factor=post,
                                               **_ps_kw(process_set)))

    @staticmethod
    def backward(ctx, *grads):  # type: ignore[override]
        out = _grouped_allreduce([g.contiguous() for g in grads], op=ctx.op,
                                        prescale_factor=ctx.pre, postscale_factor=ctx.post,
                                        **_ps_kw(ctx.ps))
        return (None, None, None, None, None, *out)


def grouped_allreduce(tensors: Sequence[torch.Tensor], average: bool | None = None,
                      name: str | None = None, compression: Any = Compression.none,
                      op: Any = None, prescale_factor: float = 1.0,
                      postscale_factor: float = 1.0,
                      process_set: ProcessSet = global_process_set) -> list[torch.Tensor]:
    """Allreduce a list of tensors as one fused unit; differentiable."""
    op = _op(op, average)
    pairs = [compression.compress(t) for t in tensors]
    outs = _Grouped.apply(name, op, prescale_factor, postscale_factor, process_set,
                          *[p[0] for p in pairs])
    return [compression.decompress(o, p[1]) for o, p in zip(outs, pairs, strict=True)]


def grouped_allreduce_(tensors: Sequence[torch.Tensor], average: bool | None = None,
                       name: str | None = None, op: Any = None, prescale_factor: float = 1.0,
                       postscale_factor: float = 1.0,
                       process_set: ProcessSet = global_process_set) -> list[torch.Tensor]:
    """In-place grouped allreduce; returns ``tensors``."""
    return synchronize(grouped_allreduce_async_(tensors, average, name, op, prescale_factor,
                                                postscale_factor, process_set))


def grouped_allreduce_async(tensors: Sequence[torch.Tensor], average: bool | None = None,
                            name: str | None = None, op: Any = None,
                            prescale_factor: float = 1.0, postscale_factor: float = 1.0,
                            process_set: ProcessSet = global_process_set) -> Any:
    """Start a grouped allreduce; ``synchronize`` returns the list of results."""
    return ringred.grouped_allreduce_async([t.detach() for t in tensors], op=_op(op, average),
                                           name=name, prescale_factor=prescale_factor,
                                           postscale_factor=postscale_factor,
                                           **_ps_kw(process_set))


def grouped_allreduce_async_(tensors: Sequence[torch.Tensor], average: bool | None = None,
                             name: str | None = None, op: Any = None,
                             prescale_factor: float = 1.0, postscale_factor: float = 1.0,
                             process_set: ProcessSet = global_process_set) -> Any:
    """Start an in-place grouped allreduce; ``synchronize`` returns ``tensors``."""
    tensors = list(tensors)
    h = grouped_allreduce_async(tensors, average, name, op, prescale_factor, postscale_factor,
                                process_set)
    return _CopyBack(h, tensors)


class _CopyBack:
    """Grouped in-place: results are copied into the caller's tensors at wait()."""

    def __init__(self, handle: Any, tensors: list):
        self.handle, self.tensors = handle, tensors

    def wait(self, timeout: float | None = None) -> Any:
        for t, r in zip(self.tensors, self.handle.wait(timeout), strict=True):
            t.data.copy_(r)
        return self.tensors

    def done(self) -> bool:
        return self.handle.done()


# ---------------------------------------------------------------- allgather


class _Allgather(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tensor, name, process_set):  # type: ignore[override]
        ctx.dim, ctx.ps = tensor.shape[0], process_set
        return _allgather(tensor, name=name, process_set=_ps(process_set))

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        # Average, as Horovod: each rank's loss counts as 1/size of the objective
        reduced = _allreduce(grad.contiguous(), op=Average, process_set=_ps(ctx.ps))
        dims = _allgather(torch.tensor([ctx.dim], dtype=torch.int64),
                                 process_set=_ps(ctx.ps))
        r = (ctx.ps or global_process_set).rank()
        offset = int(dims[:r].sum())
        return reduced.narrow(0, offset, ctx.dim), None, None


def allgather(tensor: torch.Tensor, name: str | None = None,
              process_set: ProcessSet = global_process_set) -> torch.Tensor:
    """Concatenate every rank's tensor on dimension 0 (which may differ); differentiable."""
    return _Allgather.apply(tensor, name, process_set)


def allgather_async(tensor: torch.Tensor, name: str | None = None,
                    process_set: ProcessSet = global_process_set) -> Any:
    """Start an allgather; returns a handle."""
    return ringred.allgather_async(tensor.detach(), name=name, **_ps_kw(process_set))


def grouped_allgather(tensors: Sequence[torch.Tensor], name: str | None = None,
                      process_set: ProcessSet = global_process_set) -> list[torch.Tensor]:
    """Allgather each tensor of a list; differentiable."""
    return [allgather(t, f"{name}.{i}" if name else None, process_set)
            for i, t in enumerate(tensors)]


def grouped_allgather_async(tensors: Sequence[torch.Tensor], name: str | None = None,
                            process_set: ProcessSet = global_process_set) -> Any:
    """Start an allgather of each tensor; ``synchronize`` returns the list of results."""
    return _Group([allgather_async(t, f"{name}.{i}" if name else None, process_set)
                   for i, t in enumerate(tensors)])


class _Group:
    """Several handles waited on as one (grouped operations); the result is their list."""

    def __init__(self, handles: list, finish: Any = None):
        self.handles, self.finish = handles, finish

    def wait(self, timeout: float | None = None) -> Any:
        out = [synchronize(h) for h in self.handles]
        return out if self.finish is None else self.finish(out)

    def done(self) -> bool:
        return all(poll(h) for h in self.handles)


# ---------------------------------------------------------------- broadcast


class _Broadcast(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tensor, root_rank, name, process_set):  # type: ignore[override]
        ctx.root, ctx.ps = root_rank, process_set
        return _broadcast(tensor, root_rank, name=name, process_set=_ps(process_set))

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        reduced = _allreduce(grad.contiguous(), op=Average, process_set=_ps(ctx.ps))
        if ringred.rank() != ctx.root:  # root ranks are global ranks
            reduced = reduced * 0
        return reduced, None, None, None


def broadcast(tensor: torch.Tensor, root_rank: int, name: str | None = None,
              process_set: ProcessSet = global_process_set) -> torch.Tensor:
    """Return ``root_rank``'s tensor on every rank; differentiable."""
    return _Broadcast.apply(tensor, root_rank, name, process_set)


def broadcast_(tensor: torch.Tensor, root_rank: int, name: str | None = None,
               process_set: ProcessSet = global_process_set) -> torch.Tensor:
    """In-place broadcast; returns ``tensor``."""
    _broadcast(tensor.data, root_rank, name=name, out=tensor.data,
                      process_set=_ps(process_set))
    return tensor


def broadcast_async(tensor: torch.Tensor, root_rank: int, name: str | None = None,
                    process_set: ProcessSet = global_process_set) -> Any:
    """Start a broadcast; returns a handle."""
    return ringred.broadcast_async(tensor.detach(), root_rank, name=name, **_ps_kw(process_set))


def broadcast_async_(tensor: torch.Tensor, root_rank: int, name: str | None = None,
                     process_set: ProcessSet = global_process_set) -> Any:
    """Start an in-place broadcast; ``synchronize`` returns ``tensor``."""
    h = ringred.broadcast_async(tensor.data, root_rank, name=name, out=tensor.data,
                                **_ps_kw(process_set))
    return _InPlace(h, tensor)


# ---------------------------------------------------------------- alltoall


class _Alltoall(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tensor, splits, name, process_set):  # type: ignore[override]
        out, received = ringred.alltoall(tensor, splits=splits, name=name,
                                         process_set=_ps(process_set))
        ctx.received, ctx.ps = received, process_set
        rs = torch.from_numpy(received)
        ctx.mark_non_differentiable(rs)
        return out, rs

    @staticmethod
    def backward(ctx, grad, _grad_splits):  # type: ignore[override]
        g, _ = ringred.alltoall(grad.contiguous(), splits=ctx.received,
                                process_set=_ps(ctx.ps))
        return g, None, None, None


def alltoall(tensor: torch.Tensor, splits: Any = None, name: str | None = None,
             process_set: ProcessSet = global_process_set) -> Any:
    """Scatter slices of dimension 0 to every rank and gather theirs; differentiable.

    Returns the output tensor, and also the received splits when ``splits`` is given.
    """
    out, received = _Alltoall.apply(tensor, splits, name, process_set)
    return out if splits is None else (out, received)


def alltoall_async(tensor: torch.Tensor, splits: Any = None, name: str | None = None,
                   process_set: ProcessSet = global_process_set) -> Any:
    """Alltoall with Horovod's asynchronous signature: ``synchronize`` returns
    ``(output, received_splits)``.  The exchange itself runs when this is called (ringred's
    alltoall is synchronous); the handle only hands the result over."""
    out, received = ringred.alltoall(tensor.detach(), splits=splits, name=name,
                                     process_set=_ps(process_set))
    return _Done((out, torch.from_numpy(received)))


class _Done:
    """A handle whose result is already there."""

    def __init__(self, result: Any):
        self.result = result

    def wait(self, timeout: float | None = None) -> Any:
        return self.result

    def done(self) -> bool:
        return True


# ---------------------------------------------------------------- reducescatter


class _Reducescatter(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tensor, name, op, pre, post, process_set):  # type: ignore[override]
        ctx.op, ctx.pre, ctx.post, ctx.ps = op, pre, post, process_set
        return _reducescatter(tensor, op=op, name=name, process_set=_ps(process_set),
                                     prescale_factor=pre, postscale_factor=post)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        # Horovod's convention (each rank's loss counts 1/size): Average passes the gathered
        # gradient through, Sum multiplies it by the set's size
        g = _allgather(grad.contiguous(), process_set=_ps(ctx.ps))
        scale = (_set_size(ctx.ps) if ctx.op == Sum else 1.0) * ctx.pre * ctx.post
        return (g * scale if scale != 1.0 else g), None, None, None, None, None


def reducescatter(tensor: torch.Tensor, name: str | None = None,
                  compression: Any = Compression.none, op: Any = Average,
                  process_set: ProcessSet = global_process_set, prescale_factor: float = 1.0,
                  postscale_factor: float = 1.0) -> torch.Tensor:
    """Reduce over ranks and keep this rank's share of dimension 0; differentiable."""
    op = _op(op, None)
    t, cctx = compression.compress(tensor)
    out = _Reducescatter.apply(t, name, op, prescale_factor, postscale_factor, process_set)
    return compression.decompress(out, cctx)


def grouped_reducescatter(tensors: Sequence[torch.Tensor], name: str | None = None,
                          compression: Any = Compression.none, op: Any = Average,
                          process_set: ProcessSet = global_process_set,
                          prescale_factor: float = 1.0,
                          postscale_factor: float = 1.0) -> list[torch.Tensor]:
    """Reduce-scatter each tensor of a list; differentiable."""
    return [reducescatter(t, f"{name}.{i}" if name else None, compression, op, process_set,
                          prescale_factor, postscale_factor) for i, t in enumerate(tensors)]


def reducescatter_async(tensor: torch.Tensor, name: str | None = None, op: Any = Average,
                        process_set: ProcessSet = global_process_set,
                        prescale_factor: float = 1.0, postscale_factor: float = 1.0) -> Any:
    """Start a reduce-scatter; ``synchronize`` returns this rank's share of dimension 0."""
    return ringred.reducescatter_async(tensor.detach(), op=_op(op, None), name=name,
                                       prescale_factor=prescale_factor,
                                       postscale_factor=postscale_factor, **_ps_kw(process_set))


def grouped_reducescatter_async(tensors: Sequence[torch.Tensor], name: str | None = None,
                                op: Any = Average,
                                process_set: ProcessSet = global_process_set,
                                prescale_factor: float = 1.0,
                                postscale_factor: float = 1.0) -> Any:
    """Start a reduce-scatter of each tensor; ``synchronize`` returns the list of shares."""
    return _Group([reducescatter_async(t, f"{name}.{i}" if name else None, op, process_set,
                                       prescale_factor, postscale_factor)
                   for i, t in enumerate(tensors)])


# ---------------------------------------------------------------- sparse


def sparse_allreduce_async(tensor: torch.Tensor, name: str | None = None, op: Any = Average,
                           process_set: ProcessSet = global_process_set) -> Any:
    """Start an allreduce of a sparse COO tensor, as Horovod does it: every rank's indices
    and values are allgathered; ``synchronize`` returns the sparse sum (or average), with
    duplicate indices left uncoalesced."""
    return _sparse.sparse_allreduce_async(tensor, name, _op(op, None), _ps(process_set))


# ---------------------------------------------------------------- handles, misc


def poll(handle: Any) -> bool:
    """True when the operation behind ``handle`` has finished."""
    return handle.done()


def synchronize(handle: Any) -> Any:
    """Wait for ``handle`` and return its result."""
    return handle.wait()


def join(device: int = -1) -> int:
    """Declare this rank out of data; returns the last rank to join."""
    return ringred.join()


def barrier(process_set: ProcessSet = global_process_set) -> None:
    """Block until every rank of the set arrives."""
    ringred.barrier(process_set=_ps(process_set))


def broadcast_object(obj: Any, root_rank: int = 0, name: str | None = None,
                     process_set: ProcessSet = global_process_set) -> Any:
    """Broadcast a picklable object from ``root_rank``."""
    return ringred.broadcast_object(obj, root_rank, process_set=_ps(process_set))


def allgather_object(obj: Any, name: str | None = None,
                     process_set: ProcessSet = global_process_set) -> list:
    """Gather a picklable object from every rank."""
    return ringred.allgather_object(obj, process_set=_ps(process_set))


def start_timeline(file_path: str, mark_cycles: bool = False) -> None:
    """Write a Chrome-trace timeline of the engine's activity to ``file_path``."""
    ringred.start_timeline(file_path)


def stop_timeline() -> None:
    """Stop writing the timeline."""
    ringred.stop_timeline()
