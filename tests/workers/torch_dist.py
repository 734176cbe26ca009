"""The "ringred" torch.distributed backend: registration, init from MPI, every collective
against an exact / float64 reference, subgroups, errors.  Run with mpiexec -n N; argv
selects extra parts ("ddp": DDP against gloo, "fsdp": FSDP and checkpoints)."""

from __future__ import annotations

import socket
import sys
import time

import torch
import torch.distributed as dist

import ringred

from .common import expect, main


def _bad_ranks_refused() -> None:
    """Explicit rank / world_size that are not the MPI ranks: a clear error everywhere."""
    import ringred.torch.distributed  # noqa: F401 - registers the backend

    n, r = ringred.size(), ringred.rank()
    if n < 2:
        return
    if r == 0:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
    else:
        port = None
    port = ringred.broadcast_object(port, 0)
    expect(ValueError, lambda: dist.init_process_group(
        "ringred", init_method=f"tcp://127.0.0.1:{port}", rank=(r + 1) % n, world_size=n),
        "MPI rank", "torch ranks must be the MPI ranks")
    assert not dist.is_initialized()


def _init() -> None:
    import ringred.torch  # noqa: F401 - registering is part of importing ringred.torch

    assert "ringred" in dist.Backend.backend_list
    dist.init_process_group("ringred")  # no MASTER_ADDR / RANK / WORLD_SIZE: from MPI
    assert dist.get_backend() == "ringred"
    assert dist.get_rank() == ringred.rank() and dist.get_world_size() == ringred.size()


def _val(rank: int, count: int, dtype: torch.dtype, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed * 1000 + rank)
    if dtype.is_floating_point:
        return torch.randint(-8, 9, (count,), generator=g).to(dtype) / 4  # exact in fp16/bf16
    if dtype == torch.uint8:
        return torch.randint(0, 50, (count,), generator=g).to(dtype)
    return torch.randint(-50, 50, (count,), generator=g).to(dtype)


SIZES = [0, 1, 2, 5, 1000]  # 0, 1, < ranks (at 3), not divisible by 2 or 3


def _allreduce(group=None) -> None:
    n = dist.get_world_size(group)
    r = dist.get_rank(group)
    ops = {dist.ReduceOp.SUM: lambda s: s.sum(0), dist.ReduceOp.MIN: lambda s: s.min(0).values,
           dist.ReduceOp.MAX: lambda s: s.max(0).values, dist.ReduceOp.AVG: lambda s: s.mean(0),
           dist.ReduceOp.PRODUCT: lambda s: s.prod(0)}
    for dtype in (torch.float32, torch.float64, torch.bfloat16, torch.float16, torch.int32,
                  torch.int64, torch.uint8):
        for count in SIZES:
            for op, ref in ops.items():
                if op == dist.ReduceOp.AVG and not dtype.is_floating_point:
                    continue
                if dtype == torch.uint8 and op in (dist.ReduceOp.PRODUCT, dist.ReduceOp.MIN):
                    continue
                ins = [_val(i, count, dtype, 7) for i in range(n)]
                t = ins[r].clone()
                dist.all_reduce(t, op=op, group=group)
                want = ref(torch.stack([i.double() for i in ins]))
                low = dtype in (torch.bfloat16, torch.float16)  # products may round there
                tol = (1e-2 if low else 1e-6) if op in (dist.ReduceOp.AVG, dist.ReduceOp.PRODUCT
                                                         ) and dtype.is_floating_point else 0
                assert t.dtype == dtype and t.shape == (count,)
                assert torch.allclose(t.double(), want, rtol=tol, atol=tol), (dtype, count, op)
    # non-contiguous, complex, async with a future, coalesced
    base = torch.arange(12, dtype=torch.float32).reshape(3, 4) + r
    view = base.t()
    dist.all_reduce(view, group=group)
    assert torch.equal(base, (torch.arange(12.).reshape(3, 4) * n + sum(range(n))))
    c = torch.full((3,), complex(1, r))
    dist.all_reduce(c, group=group)
    assert torch.equal(c, torch.full((3,), complex(n, sum(range(n)))))
    t = torch.ones(4)
    fut = dist.all_reduce(t, group=group, async_op=True).get_future()
    fut2 = fut.then(lambda f: f.value()[0] * 2)
    assert torch.equal(fut2.wait(), torch.full((4,), 2.0 * n))
    # a work only polled finishes (no wait, no future); a future asked for after wait()
    # comes complete; one asked for before and waited on through the Work too
    t = torch.ones(4)
    w = dist.all_reduce(t, group=group, async_op=True)
    while not w.is_completed():
        pass
    assert w.is_success() and w.exception() is None and torch.equal(t, torch.full((4,), n))
    assert w.get_future().done() and torch.equal(w.get_future().value()[0], t)
    t = torch.ones(4)
    w = dist.all_reduce(t, group=group, async_op=True)
    fut = w.get_future()
    assert w.wait() and torch.equal(fut.wait()[0], torch.full((4,), float(n)))
    ts = [torch.ones(3) * r, torch.arange(5.0).reshape(5, 1), torch.zeros(0)]
    dist.all_reduce_coalesced(ts, group=group)
    assert torch.equal(ts[0], torch.full((3,), float(sum(range(n)))))
    assert torch.equal(ts[1], torch.arange(5.0).reshape(5, 1) * n)


def _movement(group=None, dtypes=(torch.float32, torch.bfloat16, torch.int64, torch.bool,
                                   torch.uint8)) -> None:
    n = dist.get_world_size(group)
    r = dist.get_rank(group)
    gr = (lambda i: i) if group is None else (lambda i: dist.get_global_rank(group, i))
    for dtype in dtypes:
        for count in SIZES:
            mine = _val(r, count, torch.float32, 3).to(dtype)
            every = [_val(i, count, torch.float32, 3).to(dtype) for i in range(n)]
            for root in range(n):
                t = mine.clone()
                dist.broadcast(t, gr(root), group=group)
                assert torch.equal(t, every[root]), ("broadcast", dtype, count, root)
            outs = [torch.empty(count, dtype=dtype) for _ in range(n)]
            dist.all_gather(outs, mine, group=group)
            assert all(torch.equal(o, e) for o, e in zip(outs, every, strict=True))
            flat = torch.empty(n * count, dtype=dtype)
            dist.all_gather_into_tensor(flat, mine, group=group)
            assert torch.equal(flat, torch.cat(every))
            stacked = torch.empty(n, count, dtype=dtype)
            dist.all_gather_into_tensor(stacked, mine, group=group)
            assert torch.equal(stacked, torch.stack(every))
            root = n - 1
            gl = [torch.empty(count, dtype=dtype) for _ in range(n)] if r == root else None
            dist.gather(mine, gl, dst=gr(root), group=group)
            if r == root:
                assert all(torch.equal(o, e) for o, e in zip(gl, every, strict=True))
            out = torch.empty(count, dtype=dtype)
            sl = [every[i] * 1 if dtype != torch.bool else every[i].clone() for i in range(n)]
            dist.scatter(out, sl if r == 0 else None, src=gr(0), group=group)
            assert torch.equal(out, every[r])


def _reduce_scatter(group=None) -> None:
    n = dist.get_world_size(group)
    r = dist.get_rank(group)
    gr = (lambda i: i) if group is None else (lambda i: dist.get_global_rank(group, i))
    for dtype in (torch.float32, torch.float64, torch.bfloat16, torch.int64):
        for count in (0, 1, 3, 7):  # per-rank block
            ins = [_val(i, n * count, dtype, 11) for i in range(n)]
            want = torch.stack([i.double() for i in ins]).sum(0).reshape(n, count)[r]
            out = torch.empty(count, dtype=dtype)
            dist.reduce_scatter_tensor(out, ins[r], group=group)
            assert torch.equal(out.double(), want), ("reduce_scatter_tensor", dtype, count)
            out2 = torch.empty(count, dtype=dtype)
            dist.reduce_scatter(out2, list(ins[r].reshape(n, count)), group=group)
            assert torch.equal(out2, out)
            if dtype.is_floating_point:
                avg = torch.empty(count, dtype=dtype)
                dist.reduce_scatter_tensor(avg, ins[r], op=dist.ReduceOp.AVG, group=group)
                assert torch.allclose(avg.double(), want / n, rtol=1e-2 if dtype ==
                                      torch.bfloat16 else 1e-6)
            for op, fn in ((dist.ReduceOp.SUM, lambda s: s.sum(0)),
                           (dist.ReduceOp.MAX, lambda s: s.max(0).values)):
                t = ins[r].clone()
                root = n - 1
                dist.reduce(t, gr(root), op=op, group=group)
                if r == root:
                    assert torch.equal(t.double(), fn(torch.stack([i.double() for i in ins])))
                else:
                    assert torch.equal(t, ins[r])
    # all_to_all_single, even and uneven splits, and the list form
    for count in (0, 1, 4):
        src = torch.arange(n * count, dtype=torch.float32) + 100 * r
        out = torch.empty(n * count)
        dist.all_to_all_single(out, src, group=group)
        want = torch.cat([torch.arange(r * count, (r + 1) * count, dtype=torch.float32)
                          + 100 * j for j in range(n)])
        assert torch.equal(out, want), ("all_to_all_single", count)
    send = [j + r + 1 for j in range(n)]  # rows rank r sends to rank j
    recv = [r + j + 1 for j in range(n)]  # rows rank r receives from rank j
    src = torch.cat([torch.full((send[j], 2), float(10 * r + j)) for j in range(n)])
    out = torch.empty(sum(recv), 2)
    dist.all_to_all_single(out, src, recv, send, group=group)
    assert torch.equal(out, torch.cat([torch.full((recv[j], 2), float(10 * j + r))
                                       for j in range(n)]))
    outs = [torch.empty(2, dtype=torch.int64) for _ in range(n)]
    dist.all_to_all(outs, [torch.tensor([r, j]) for j in range(n)], group=group)
    assert all(torch.equal(outs[j], torch.tensor([j, r])) for j in range(n))
    dist.barrier(group=group)


def _errors() -> None:
    n, r = dist.get_world_size(), dist.get_rank()
    if n > 1:
        expect(NotImplementedError, lambda: dist.send(torch.ones(1), (r + 1) % n), "send")
    expect(NotImplementedError, lambda: dist.all_reduce(torch.ones(1, dtype=torch.int32),
                                                         op=dist.ReduceOp.BAND), "BAND")
    if n > 1:
        # shapes differ by rank: a clear error on every rank, then the group still works
        expect(ringred.MismatchError, lambda: dist.all_reduce(torch.ones(2 + r)), "shape")
        # a tensor the group cannot reduce on one rank only: that rank raises, the others
        # fail at once with its reason (not after the stall inspector), and nobody hangs
        bad = torch.ones(2, dtype=torch.bool if r == n - 1 else torch.float32)
        try:
            dist.all_reduce(bad)
        except Exception as exc:  # noqa: BLE001 - the peers' type is the engine's
            assert "torch.bool" in str(exc), exc
            assert r != n - 1 or isinstance(exc, NotImplementedError), exc
        else:
            raise AssertionError("a bool tensor on one rank went through")
        expect(ringred.MismatchError, lambda: dist.all_gather_into_tensor(
            torch.empty(n * (1 + r)), torch.ones(1 + r)), "shape")
    t = torch.ones(3)
    dist.all_reduce(t)
    assert torch.equal(t, torch.full((3,), float(n)))


def _subgroups() -> None:
    n, r = dist.get_world_size(), dist.get_rank()
    ends = dist.new_group([0, n - 1]) if n > 1 else dist.new_group([0])
    evens = dist.new_group(list(range(0, n, 2)))
    # a group without rank 0: its members have been in different numbers of groups before
    tail = dist.new_group(list(range(1, n))) if n > 1 else dist.new_group([0])
    for g, members in ((ends, sorted({0, n - 1})), (evens, list(range(0, n, 2))),
                       (tail, list(range(1, n)) or [0])):
        if r in members:
            assert dist.get_backend(g) == "ringred"
            assert dist.get_world_size(g) == len(members)
            assert g.process_set.ranks == members
            t = torch.full((5,), float(r))
            dist.all_reduce(t, group=g)
            assert torch.equal(t, torch.full((5,), float(sum(members))))
            _movement(g, dtypes=(torch.float32, torch.bool))
    t = torch.ones(2)
    dist.all_reduce(t)
    assert torch.equal(t, torch.full((2,), float(n)))


def _timed(label: str, fn) -> None:
    t0 = time.perf_counter()
    fn()
    if ringred.rank() == 0:
        print(f"{label}: {time.perf_counter() - t0:.1f} s", flush=True)


def body() -> None:
    parts = sys.argv[1:] or ["collectives"]
    _timed("bad ranks", _bad_ranks_refused)
    _timed("init", _init)
    if "collectives" in parts:
        for fn in (_allreduce, _movement, _reduce_scatter, _errors, _subgroups):
            _timed(fn.__name__, fn)
    if "ddp" in parts:
        from .torch_ddp import run_ddp

        _timed("ddp", run_ddp)
    if "fsdp" in parts:
        from .torch_fsdp import run_fsdp

        _timed("fsdp", run_fsdp)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(body)
