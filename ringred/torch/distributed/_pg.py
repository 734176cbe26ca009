"""``RingredProcessGroup``: torch.distributed's collectives on ringred's background engine.

Each torch group owns a ringred process set (its own communicator and engine), so its
traffic never mixes with the user's own ringred calls.  Every collective submits engine
requests named ``<group>.<kind>.<n>`` (``n`` counts the group's collectives of that kind,
which torch requires every rank to issue in the same order; see ``_name``) and returns a
:class:`RingredWork`; ranks whose requests disagree (shapes, dtypes) get ringred's
MismatchError on every rank.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

import ringred
from ringred._lib import ReqKind
from ringred.ops import ReduceOp
from ringred.process_sets import ProcessSet

from . import _tensors as T
from ._work import RingredWork, done_work, lineage

# Divisible by 1-6, 8, 10, 12, 15, 20, 24, 30, 40, 60: see RingredProcessGroup._name (DDP on
# ResNet-50 issues 5 bucket allreduces per step).  Every name of the cycle stays in the
# engine's response cache, whose total size drives the engine's "cold gradient set" rule
# (docs/engine.md): a loop of small collectives looks like a larger gradient set.
NAME_CYCLE = 120


def _unsupported(name: str) -> NotImplementedError:
    return NotImplementedError(f"ringred process group: {name} is not supported")


class RingredProcessGroup(dist.ProcessGroup):
    """A torch ``ProcessGroup`` whose collectives run on a ringred process set."""

    def __init__(self, process_set: ProcessSet, group_rank: int, group_size: int, tag: str,
                 group_name: str = ""):
        super().__init__(group_rank, group_size)
        self.process_set = process_set
        self._group_name = group_name
        self._rank, self._size = group_rank, group_size
        self._tag = tag
        self._counts: dict[str, int] = {}
        self._slots: dict[str, weakref.ref] = {}
        self._lock = threading.Lock()
        process_set._context().get_engine()  # collective: start the engine now

    # ------------------------------------------------------------------ plumbing
    def getBackendName(self) -> str:  # noqa: N802 - torch's name
        """The registered backend name."""
        return "ringred"

    @property
    def pg_name(self) -> str:  # noqa: D102
        return self._tag

    @property
    def group_name(self) -> str:
        """torch's name of the group (DeviceMesh and functional collectives look it up)."""
        return self._group_name

    @property
    def group_desc(self) -> str:  # noqa: D102
        return f"ringred:{self._tag}"

    def size(self) -> int:  # noqa: D102
        return self._size

    def rank(self) -> int:  # noqa: D102
        return self._rank

    def __repr__(self) -> str:
        return f"RingredProcessGroup(rank {self._rank} of {self._size}, {self._tag})"

    def _name(self, kind: str) -> str:
        """``<group>.<kind>.<n mod NAME_CYCLE>``: the same on every rank (torch requires the
        same order of collectives everywhere), and recurring, so that a training loop's
        collectives hit the engine's response cache once warm (a loop of 1-6, 8, 10, 12, 15,
        20, 24, 30, 40, 60 or 120 collectives of a kind; other loops take the engine's slow
        path, which is correct, only slower).  A name still in flight from
        NAME_CYCLE calls ago is waited for first."""
        parent = lineage()
        key = kind if parent is None else f"{parent}>{kind}"
        with self._lock:
            n = self._counts.get(key, 0)
            self._counts[key] = n + 1
        name = f"{self._tag}.{key}.{n % NAME_CYCLE}" if parent is None else \
            f"{key}.{n % NAME_CYCLE}"
        ref = self._slots.get(name)
        old = ref() if ref is not None else None
        if old is not None and not old.is_completed():
            old.wait()
        return name

    def _submit(self, handles: list, finish: Any, what: str,
                result: Any = None) -> RingredWork:
        """The work of ``handles``: ``finish(values)`` makes its result (None: ``result``).
        The completer takes it once somebody asks for its future."""
        work = RingredWork(handles, finish, what, handles[0].name if handles else "", result)
        for h in handles:
            self._slots[h.name] = weakref.ref(work)  # the work (and its tensors) may go
        return work

    @property
    def _ps(self) -> ProcessSet:
        return self.process_set

    def _global(self, group_rank: int) -> int:
        """ringred's root ranks are global ranks; c10d hands the backend group ranks."""
        ranks = self.process_set.ranks
        return group_rank if ranks is None else ranks[group_rank]

    # ------------------------------------------------------------------ allreduce
    def allreduce(self, tensors: list[torch.Tensor], opts: Any = None) -> RingredWork:
        """Reduce each tensor in place over the group (SUM, AVG, MIN, MAX, PRODUCT)."""
        op = T.reduce_op(opts.reduceOp if opts is not None else dist.ReduceOp.SUM, "allreduce")
        if len(tensors) != 1:
            return self.allreduce_coalesced(tensors, opts)
        t = tensors[0]
        name = self._name("allreduce")
        try:
            src = T.reducible(t, op, "allreduce")
        except Exception as exc:  # one rank's tensor: the others fail this name at once
            self._ps._context().get_engine().reject(name, ReqKind.ALLREDUCE, exc)
            raise
        if src is t:  # by address (ringred._torch_fast), in place: the result is t
            h = ringred.allreduce_async(t, op=op, name=name, out=t, process_set=self._ps)
            return self._submit([h], None, "allreduce", [t])
        x = T.array(src)
        h = ringred.allreduce_async(x, op=op, name=name, out=x, process_set=self._ps)

        def finish(_v: list) -> list:
            if src.data_ptr() != t.data_ptr():
                t.copy_(torch.view_as_complex(src) if t.is_complex() else src)
            return [t]

        return self._submit([h], finish, "allreduce")

    def allreduce_coalesced(self, tensors: list[torch.Tensor], opts: Any = None) -> RingredWork:
        """Reduce a list of tensors as one fused engine unit."""
        op = T.reduce_op(opts.reduceOp if opts is not None else dist.ReduceOp.SUM,
                         "allreduce_coalesced")
        srcs = [T.reducible(t, op, "allreduce_coalesced") for t in tensors]
        if not srcs:
            return done_work([])
        h = ringred.grouped_allreduce_async([T.array(s) for s in srcs], op=op,
                                            name=self._name("coalesced"), process_set=self._ps)

        def finish(values: list) -> list:
            for t, r in zip(tensors, values[0], strict=True):
                res = torch.from_numpy(r) if r.dtype != T.BFLOAT16 else torch.from_numpy(
                    r.view(np.int16)).view(torch.bfloat16)
                t.copy_(torch.view_as_complex(res) if t.is_complex() else res.view(t.shape))
            return list(tensors)

        return self._submit([h], finish, "allreduce_coalesced")

    def reduce(self, tensors: list[torch.Tensor], opts: Any) -> RingredWork:
        """Reduce to ``opts.rootRank``; the other ranks' tensors are left as they were."""
        op = T.reduce_op(opts.reduceOp, "reduce")
        t = tensors[0]
        src = T.reducible(t, op, "reduce")
        x = T.array(src)
        res = np.empty_like(x)
        h = ringred.allreduce_async(x, op=op, name=self._name("reduce"), out=res,
                                    process_set=self._ps)
        root = opts.rootRank

        def finish(_v: list) -> list:
            if self._rank == root:
                r = torch.from_numpy(res.view(np.int16)).view(torch.bfloat16) \
                    if res.dtype == T.BFLOAT16 else torch.from_numpy(res)
                t.copy_(torch.view_as_complex(r) if t.is_complex() else r)
            return [t]

        return self._submit([h], finish, "reduce")

    def barrier(self, opts: Any = None) -> RingredWork:
        """Complete once every rank of the group has arrived."""
        x = np.zeros(1, np.uint8)
        h = ringred.allreduce_async(x, op=ReduceOp.Sum, name=self._name("barrier"), out=x,
                                    process_set=self._ps)
        return self._submit([h], lambda _v: [], "barrier")

    # ------------------------------------------------------------------ data movement
    def broadcast(self, tensors: list[torch.Tensor], opts: Any) -> RingredWork:
        """Copy ``opts.rootRank``'s tensors to every rank."""
        root = opts.rootRank
        handles, pairs = [], []
        for t in tensors:
            T.check_cpu(t, "broadcast")
            src = t.contiguous()
            b = T.byte_array(src)
            handles.append(ringred.broadcast_async(b, self._global(root),
                                                   name=self._name("broadcast"),
                                                   out=b, process_set=self._ps))
            pairs.append((t, src))

        def finish(_v: list) -> list:
            for t, src in pairs:
                if src.data_ptr() != t.data_ptr():
                    t.copy_(src)
            return list(tensors)

        return self._submit(handles, finish, "broadcast")

    def _gather_bytes(self, t: torch.Tensor, kind: str) -> tuple[Any, torch.Tensor]:
        """Start an allgather of ``t``'s bytes as one row (ranks must agree on the size)."""
        T.check_cpu(t, kind)
        src = t.contiguous()
        row = T.byte_array(src).reshape(1, -1)
        return ringred.allgather_async(row, name=self._name(kind), process_set=self._ps), src

    def allgather(self, output_tensors: list[list[torch.Tensor]],
                  input_tensors: list[torch.Tensor], opts: Any = None) -> RingredWork:
        """Every rank's input into ``output_tensors[0][r]``."""
        if len(input_tensors) != 1:
            raise _unsupported("allgather of more than one input tensor")
        outs = output_tensors[0]
        if len(outs) != self._size:
            raise ValueError(f"allgather: {len(outs)} output tensors for a group of "
                             f"{self._size}")
        h, _src = self._gather_bytes(input_tensors[0], "allgather")

        def finish(values: list) -> list:
            rows = torch.from_numpy(values[0])
            for r, o in enumerate(outs):
                _copy_bytes(o, rows[r])
            return output_tensors

        return self._submit([h], finish, "allgather")

    def _allgather_base(self, output: torch.Tensor, input: torch.Tensor,  # noqa: A002
                        opts: Any = None) -> RingredWork:
        """``all_gather_into_tensor``: ranks' inputs concatenated into ``output``."""
        if output.numel() != input.numel() * self._size:
            raise ValueError(f"all_gather_into_tensor: output has {output.numel()} elements, "
                             f"expected {self._size} x {input.numel()}")
        h, _src = self._gather_bytes(input, "allgather_base")
        return self._submit([h], lambda v: [_copy_bytes(output, torch.from_numpy(v[0]))],
                            "all_gather_into_tensor")

    all_gather_single = _allgather_base

    def gather(self, output_tensors: list[list[torch.Tensor]],
               input_tensors: list[torch.Tensor], opts: Any) -> RingredWork:
        """Every rank's input into the root's ``output_tensors[0]``."""
        root = opts.rootRank
        h, _src = self._gather_bytes(input_tensors[0], "gather")

        def finish(values: list) -> list:
            if self._rank == root:
                rows = torch.from_numpy(values[0])
                for r, o in enumerate(output_tensors[0]):
                    _copy_bytes(o, rows[r])
            return output_tensors[0] if output_tensors else []

        return self._submit([h], finish, "gather")

    def scatter(self, output_tensors: list[torch.Tensor],
                input_tensors: list[list[torch.Tensor]], opts: Any) -> RingredWork:
        """The root's ``input_tensors[0][r]`` into rank r's ``output_tensors[0]``."""
        root = opts.rootRank
        out = output_tensors[0]
        T.check_cpu(out, "scatter")
        nbytes = out.numel() * out.element_size()
        if self._rank == root:
            ins = input_tensors[0]
            if len(ins) != self._size or any(i.numel() * i.element_size() != nbytes
                                              for i in ins):
                raise ValueError("scatter: the root needs one input per rank, each the size "
                                 "of the output")
            buf = torch.cat([T.as_bytes(i.contiguous()) for i in ins]).reshape(self._size, -1)
        else:
            buf = torch.empty((self._size, nbytes), dtype=torch.uint8)
        b = buf.numpy()
        h = ringred.broadcast_async(b, self._global(root), name=self._name("scatter"), out=b,
                                    process_set=self._ps)
        return self._submit([h], lambda _v: [_copy_bytes(out, buf[self._rank])], "scatter")

    # ------------------------------------------------------------------ reduce-scatter
    def _reduce_scatter_base(self, output: torch.Tensor, input: torch.Tensor,  # noqa: A002
                             opts: Any = None) -> RingredWork:
        """``reduce_scatter_tensor``: reduce ``input`` and keep this rank's block."""
        op = T.reduce_op(opts.reduceOp if opts is not None else dist.ReduceOp.SUM,
                         "reduce_scatter_tensor")
        if input.numel() != output.numel() * self._size:
            raise ValueError(f"reduce_scatter_tensor: input has {input.numel()} elements, "
                             f"expected {self._size} x {output.numel()}")
        if output.dtype != input.dtype:
            raise ValueError("reduce_scatter_tensor: input and output dtypes differ")
        src = T.reducible(input, op, "reduce_scatter_tensor")
        rows = T.array(src).reshape(self._size, -1)
        h = ringred.reducescatter_async(rows, op=op, name=self._name("reduce_scatter"),
                                        process_set=self._ps)
        return self._submit([h], lambda v: [_copy_values(output, v[0])], "reduce_scatter")

    reduce_scatter_single = _reduce_scatter_base

    def reduce_scatter(self, output_tensors: list[torch.Tensor],
                       input_tensors: list[list[torch.Tensor]], opts: Any = None) -> RingredWork:
        """Reduce ``input_tensors[0][r]`` over ranks into rank r's ``output_tensors[0]``."""
        if len(output_tensors) != 1:
            raise _unsupported("reduce_scatter of more than one output tensor")
        out, ins = output_tensors[0], input_tensors[0]
        if len(ins) != self._size or any(i.shape != out.shape for i in ins):
            raise NotImplementedError(
                "ringred process group: reduce_scatter needs one input per rank, each of the "
                "output's shape (uneven reduce_scatter is not supported)")
        stacked = torch.stack([i.reshape(out.shape) for i in ins]) if ins else out
        return self._reduce_scatter_base(out, stacked, opts)

    # ------------------------------------------------------------------ all-to-all
    def alltoall_base(self, output: torch.Tensor, input: torch.Tensor,  # noqa: A002
                      output_split_sizes: list[int], input_split_sizes: list[int],
                      opts: Any = None) -> RingredWork:
        """``all_to_all_single``, built on the engine's allgather: every rank receives every
        rank's whole input and keeps its part (n times the traffic of a direct all-to-all)."""
        T.check_cpu(input, "all_to_all_single")
        n = self._size
        src = input.contiguous()
        rows_in = src.shape[0] if src.dim() else 1
        if not input_split_sizes:
            if rows_in % n:
                raise ValueError(f"all_to_all_single: {rows_in} rows do not split evenly "
                                 f"over {n} ranks")
            input_split_sizes = [rows_in // n] * n
        out_rows = output.shape[0] if output.dim() else 1
        if not output_split_sizes:
            output_split_sizes = [out_rows // n] * n
        if len(input_split_sizes) != n or sum(input_split_sizes) != rows_in:
            raise ValueError(f"all_to_all_single: input splits {input_split_sizes} do not "
                             f"match {rows_in} rows and {n} ranks")
        row_bytes = src.numel() * src.element_size() // max(rows_in, 1)
        splits = np.asarray(input_split_sizes, np.int64).reshape(1, n)
        hs = ringred.allgather_async(splits, name=self._name("alltoall_splits"),
                                     process_set=self._ps)
        hd = ringred.allgather_async(T.byte_array(src), name=self._name("alltoall"),
                                     process_set=self._ps)
        me = self._rank

        def finish(values: list) -> list:
            all_splits, data = values[0], torch.from_numpy(values[1])
            parts, base = [], 0
            for j in range(n):
                off = base + int(all_splits[j, :me].sum()) * row_bytes
                cnt = int(all_splits[j, me]) * row_bytes
                if int(all_splits[j, me]) != output_split_sizes[j]:
                    raise ValueError(f"all_to_all_single: rank {j} sends {all_splits[j, me]} "
                                     f"rows here, output_split_sizes says "
                                     f"{output_split_sizes[j]}")
                parts.append(data[off:off + cnt])
                base += int(all_splits[j].sum()) * row_bytes
            _copy_bytes(output, torch.cat(parts) if parts else data[:0])
            return [output]

        return self._submit([hs, hd], finish, "all_to_all_single")

    all_to_all_single = alltoall_base

    def alltoall(self, output_tensors: list[torch.Tensor], input_tensors: list[torch.Tensor],
                 opts: Any = None) -> RingredWork:
        """List all-to-all: ``input_tensors[r]`` to rank r, rank r's into
        ``output_tensors[r]`` (through ``alltoall_base``)."""
        if len(input_tensors) != self._size or len(output_tensors) != self._size:
            raise ValueError("all_to_all: one input and one output tensor per rank")
        dt = input_tensors[0].dtype
        ins = torch.cat([T.as_bytes(i.contiguous()) for i in input_tensors]).view(dt) \
            if dt != torch.uint8 else torch.cat([i.reshape(-1) for i in input_tensors])
        out_sizes = [o.numel() for o in output_tensors]
        out = torch.empty(sum(out_sizes), dtype=dt)
        inner = self.alltoall_base(out, ins.reshape(-1), out_sizes,
                                   [i.numel() for i in input_tensors], opts)

        def finish(_v: list) -> list:
            inner.wait()
            for o, part in zip(output_tensors, torch.split(out, out_sizes), strict=True):
                o.copy_(part.view(o.shape))
            return output_tensors

        return self._submit([], finish, "all_to_all")

    # ------------------------------------------------------------------ unsupported
    def send(self, tensors: list[torch.Tensor], dst: int, tag: int = 0) -> RingredWork:
        """Not supported: raises NotImplementedError."""
        raise _unsupported("send (point-to-point)")

    def recv(self, tensors: list[torch.Tensor], src: int, tag: int = 0) -> RingredWork:
        """Not supported: raises NotImplementedError."""
        raise _unsupported("recv (point-to-point)")

    def recv_anysource(self, tensors: list[torch.Tensor], tag: int = 0) -> RingredWork:
        """Not supported: raises NotImplementedError."""
        raise _unsupported("recv_anysource (point-to-point)")

    def allgather_coalesced(self, output_lists: Any, input_list: Any,
                            opts: Any = None) -> RingredWork:
        """Not supported: raises NotImplementedError."""
        raise _unsupported("allgather_coalesced")

    def monitored_barrier(self, opts: Any = None) -> None:
        """Not supported: raises NotImplementedError."""
        raise _unsupported("monitored_barrier")


def _copy_bytes(dst: torch.Tensor, data: torch.Tensor) -> torch.Tensor:
    """Copy raw bytes ``data`` into ``dst`` (any dtype, contiguous or not)."""
    if dst.is_contiguous():
        T.as_bytes(dst).copy_(data.reshape(-1))
    else:
        tmp = torch.empty(dst.shape, dtype=dst.dtype)
        T.as_bytes(tmp).copy_(data.reshape(-1))
        dst.copy_(tmp)
    return dst


def _copy_values(dst: torch.Tensor, arr: np.ndarray) -> torch.Tensor:
    """Copy an engine result array into ``dst`` (same element count)."""
    if arr.dtype == T.BFLOAT16:
        r = torch.from_numpy(arr.view(np.int16)).view(torch.bfloat16)
    else:
        r = torch.from_numpy(arr)
    if dst.is_complex():
        r = torch.view_as_complex(r.reshape(*dst.shape, 2))
    dst.copy_(r.reshape(dst.shape))
    return dst
