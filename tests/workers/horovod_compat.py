"""What Horovod's own test_torch.py taught (issue 19), as ringred tests that need no Horovod.

Each check: a Horovod semantic ringred.torch now follows, or a failure that must end on every
rank and leave the library usable.  Run with mpiexec -n N (N >= 1).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

import ringred
import ringred.torch as hvd

from .common import expect, main


def check_process_set_roots() -> None:
    """Root ranks are global ranks in a process set too (Horovod), for every front end."""
    n, r = hvd.size(), hvd.rank()
    if n < 2:
        return
    evens = hvd.add_process_set([q for q in range(n) if q % 2 == 0])
    odds = hvd.add_process_set([q for q in range(n) if q % 2 == 1])
    try:
        mine = evens if r % 2 == 0 else odds
        root = mine.ranks[-1]
        t = torch.tensor([float(r)] * 3)
        assert hvd.broadcast(t, root, process_set=mine).tolist() == [float(root)] * 3
        assert int(ringred.broadcast(np.array([r]), root, process_set=mine)[0]) == root
        got = ringred.broadcast_async(np.array([r]), root, process_set=mine).wait()
        assert int(got[0]) == root
        obj = hvd.broadcast_object({"from": r}, root_rank=root, process_set=mine)
        assert obj == {"from": root}, obj
        # a root that is not a member: the same clear error on every member
        outsider = (evens if mine is odds else odds).ranks[0]
        expect(ValueError, lambda: hvd.broadcast(t, outsider, process_set=mine),
               f"root rank {outsider} is not a member", "global ranks")
        # and the set still works
        assert hvd.allreduce(t, op=hvd.Sum, process_set=mine)[0] == sum(mine.ranks)
    finally:
        hvd.remove_process_set(odds)
        hvd.remove_process_set(evens)


def check_integer_scaling() -> None:
    """prescale/postscale on integer tensors, as Horovod: in float64, truncated toward zero
    (saturated at the type's range); synchronous, engine and reducescatter paths alike."""
    n = hvd.size()
    for dt in (np.int32, np.int64, np.uint8):
        for count in (0, 1, max(1, n - 1), 1001, 70001):
            rng = np.random.default_rng([count, hvd.rank()])
            x = rng.integers(0 if dt == np.uint8 else -100, 100, count).astype(dt)
            pre, post = 0.37, 1.9
            mine = np.trunc(x.astype(np.float64) * pre).astype(np.int64)
            # integer sums wrap around in the data type (as in MPI); the scaling saturates
            total = np.sum(ringred.allgather_object(mine), axis=0) if count else mine
            total = total.astype(dt).astype(np.int64)
            info = np.iinfo(dt)
            want = np.clip(np.trunc(total * post), info.min, info.max).astype(dt)
            for got in (ringred.allreduce(x, op=ringred.Sum, prescale_factor=pre,
                                          postscale_factor=post),
                        ringred.allreduce_async(x, op=ringred.Sum, prescale_factor=pre,
                                                postscale_factor=post).wait(),
                        hvd.allreduce(torch.from_numpy(x), op=hvd.Sum, prescale_factor=pre,
                                      postscale_factor=post).numpy()):
                assert np.array_equal(got, want), (dt, count, got[:4], want[:4])
            # Average: one factor post/size, as Horovod applies it
            avg = ringred.allreduce(x, op=ringred.Average, postscale_factor=post)
            s = np.sum(ringred.allgather_object(x.astype(np.int64)), axis=0) if count else mine
            s = s.astype(dt).astype(np.int64)
            wavg = np.clip(np.trunc(s * (post / n)), info.min, info.max).astype(dt)
            assert np.array_equal(avg, wavg), (dt, count, avg[:4], wavg[:4])
    x = torch.arange(4 * n, dtype=torch.int32).reshape(2 * n, 2) * (hvd.rank() + 1)
    total = x // (hvd.rank() + 1) * sum(range(1, n + 1))
    rows = slice(2 * hvd.rank(), 2 * hvd.rank() + 2)
    want = torch.trunc(total[rows].double() * 0.5).int()
    assert torch.equal(hvd.reducescatter(x, op=hvd.Sum, postscale_factor=0.5), want)
    got = hvd.synchronize(hvd.reducescatter_async(x, op=hvd.Sum, postscale_factor=0.5))
    assert torch.equal(got, want)


def check_gradients() -> None:
    """Horovod's autograd conventions: every rank's loss counts 1/size."""
    n, r = hvd.size(), hvd.rank()
    x = torch.ones(3, requires_grad=True)
    hvd.allgather(x).sum().backward()
    assert torch.equal(x.grad, torch.ones(3)), x.grad  # averaged, not summed
    x = torch.ones(3, requires_grad=True)
    hvd.broadcast(x, n - 1).sum().backward()
    assert torch.equal(x.grad, torch.ones(3) * (r == n - 1)), x.grad
    for op, scale in ((hvd.Average, 1.0), (hvd.Sum, float(n))):
        x = torch.ones(2 * n, requires_grad=True)
        hvd.reducescatter(x, op=op).sum().backward()
        assert torch.equal(x.grad, torch.full((2 * n,), scale)), (op, x.grad)


def check_async_api() -> None:
    """The asynchronous and grouped calls Horovod has."""
    n, r = hvd.size(), hvd.rank()
    xs = [torch.full((2 * n, 2), float(r + i)) for i in range(3)]
    outs = hvd.synchronize(hvd.grouped_reducescatter_async(xs, op=hvd.Sum))
    for i, o in enumerate(outs):
        assert torch.equal(o, torch.full((2, 2), float(sum(range(n)) + n * i)))
    outs = hvd.synchronize(hvd.grouped_allgather_async([torch.tensor([r]), torch.tensor([2 * r])]))
    assert outs[0].tolist() == list(range(n)) and outs[1].tolist() == [2 * q for q in range(n)]
    splits = torch.ones(n, dtype=torch.int32)
    out, received = hvd.synchronize(hvd.alltoall_async(torch.full((n,), float(r)), splits))
    assert out.tolist() == [float(q) for q in range(n)] and received.tolist() == [1] * n
    assert hvd.is_homogeneous() in (True, False)
    # sparse: the allgathered entries of every rank, averaged
    i = torch.tensor([[r % 3, 2]])
    v = torch.tensor([1.0, float(r)])
    sp = torch.sparse_coo_tensor(i, v, (4,))
    h = hvd.sparse_allreduce_async(sp, name="sp", op=hvd.Average)
    dense = h().to_dense()  # Horovod's handles are callables
    want = torch.zeros(4)
    for q in range(n):
        want[q % 3] += 1.0 / n
        want[2] += q / n
    assert torch.allclose(dense, want), (dense, want)
    # a dense tensor on one rank only: that rank raises TypeError, every other rank's
    # allgathers fail at once with its reason (not after the stall inspector's minute);
    # named and unnamed, and the next sparse call works
    if n > 1:
        for nm in ("sp_bad", None):
            try:
                x = torch.ones(4) if r == n - 1 else sp
                hvd.sparse_allreduce_async(x, name=nm, op=hvd.Sum)()
            except TypeError as exc:
                assert r == n - 1 and "sparse COO tensor" in str(exc), exc
            except Exception as exc:  # noqa: BLE001 - the peers' error names the reason
                assert r != n - 1 and "sparse COO tensor" in str(exc), exc
            else:
                raise AssertionError("a dense tensor on one rank went through")
        assert torch.allclose(hvd.sparse_allreduce_async(sp, name="sp2", op=hvd.Average)()
                              .to_dense(), want)


def check_sparse_optimizer() -> None:
    """DistributedOptimizer on sparse embedding gradients: allgathered, or densified with
    sparse_as_dense; both give the dense average."""
    n, r = hvd.size(), hvd.rank()
    for as_dense in (False, True):
        torch.manual_seed(0)
        emb = torch.nn.Embedding(10, 3, sparse=True)
        opt = hvd.DistributedOptimizer(torch.optim.SGD(emb.parameters(), lr=1.0),
                                       named_parameters=emb.named_parameters(),
                                       sparse_as_dense=as_dense)
        assert opt._parameter_names[emb.weight] == "weight"
        before = emb.weight.detach().clone()
        emb(torch.tensor([r % 10, 9])).sum().backward()
        opt.step()
        want = before.clone()
        for q in range(n):
            want[q % 10] -= 1.0 / n
            want[9] -= 1.0 / n
        assert torch.allclose(emb.weight.detach(), want), (as_dense, emb.weight, want)
        opt.remove_hooks()


def check_optimizer_process_set() -> None:
    """ringred.torch's DistributedOptimizer over a process set, as Horovod: members average
    within the set, a rank outside it steps on its own gradients (ringred's own wrapper
    refuses such a rank instead)."""
    n, r = hvd.size(), hvd.rank()
    firsts = hvd.add_process_set([0])
    try:
        w = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))
        opt = hvd.DistributedOptimizer(torch.optim.SGD([w], lr=1.0),
                                       named_parameters=[("w", w)], process_set=firsts)
        (w * (r + 1.0)).sum().backward()
        opt.step()
        assert torch.equal(w.detach(), torch.full((2,), -(r + 1.0))), w
        if n > 1 and r != 0:
            expect(ValueError, lambda: ringred.DistributedOptimizer(
                torch.optim.SGD([w], lr=1.0), process_set=firsts), "not in process set")
    finally:
        hvd.remove_process_set(firsts)
    # step() right after synchronize(): no second allreduce, and Horovod's warning
    w = torch.nn.Parameter(torch.ones(2))
    opt = hvd.DistributedOptimizer(torch.optim.SGD([w], lr=1.0), named_parameters=[("v", w)])
    (w * (r + 1.0)).sum().backward()
    opt.synchronize()
    with warnings.catch_warnings(record=True) as ws:
        warnings.simplefilter("always")
        opt.step()
    assert len(ws) == 1 and "skip_synchronize()" in str(ws[0].message), ws
    assert torch.allclose(w.detach(), torch.full((2,), 1.0 - (n + 1) / 2)), w
    opt.remove_hooks()


def check_broadcast_optimizer_state() -> None:
    """A fresh optimizer: zero gradients appear (as in Horovod) but no step is taken, so
    weight decay does not move the parameters (Horovod's dummy step does)."""
    torch.manual_seed(3)
    m = torch.nn.Linear(3, 2)
    frozen = torch.nn.Parameter(torch.ones(2), requires_grad=False)
    opt = hvd.DistributedOptimizer(
        torch.optim.SGD(list(m.parameters()) + [frozen], lr=0.1, momentum=0.9,
                        weight_decay=0.5), named_parameters=[*m.named_parameters(), ("f", frozen)])
    hvd.broadcast_parameters(m.state_dict(), root_rank=0)
    before = [p.detach().clone() for p in m.parameters()]
    hvd.broadcast_optimizer_state(opt, root_rank=0)
    assert all(torch.equal(a, p.detach()) for a, p in zip(before, m.parameters(), strict=True))
    assert all(torch.equal(p.grad, torch.zeros_like(p)) for p in m.parameters())
    assert frozen.grad is None
    assert torch.equal(hvd.broadcast(m.weight.grad, root_rank=0), torch.zeros(2, 3))
    opt.remove_hooks()


def check_join() -> None:
    """While a rank has joined: allreduce goes on with its zeros, allgather and broadcast fail
    on the ranks that called them; join returns the last rank to join on every rank, and
    everything works afterwards."""
    n, r = hvd.size(), hvd.rank()
    if n < 2:
        return
    for first in range(n):
        if r == first:
            last = hvd.join()
        else:
            # named: the joined rank makes no call, so unnamed counters would differ later
            got = hvd.allreduce(torch.ones(5), op=hvd.Sum, name=f"join.{first}")
            assert torch.equal(got, torch.full((5,), float(n - 1))), got
            expect(RuntimeError, lambda f=first: hvd.allgather(torch.ones(2), name=f"jg.{f}"),
                   "joined")
            root = (first + 1) % n  # a rank that has not joined
            expect(RuntimeError,
                   lambda f=first, q=root: hvd.broadcast(torch.ones(2), q, name=f"jb.{f}"),
                   "joined")
            last = hvd.join()
        assert last != first
        assert hvd.allgather_object(last) == [last] * n
    assert hvd.allreduce(torch.ones(2), op=hvd.Sum).tolist() == [float(n)] * 2


def check_failures_end_everywhere() -> None:
    """A failing collective fails on every rank and the next call starts clean."""
    n, r = hvd.size(), hvd.rank()
    if n < 2:
        return
    # same element count, different shape: Horovod refuses, so does ringred.torch
    shape = (17, 23 * 57) if r == 0 else (17, 23, 57)
    expect(RuntimeError, lambda: hvd.allreduce(torch.zeros(shape)), "shape")
    # alltoall on one rank, allreduce on the others: a mismatch everywhere, not a hang
    if r == 0:
        expect(ringred.MismatchError, lambda: ringred.alltoall(np.zeros(n)), "mismatched")
    else:
        expect(ringred.MismatchError, lambda: ringred.allreduce(np.zeros(3)), "mismatched")
    assert hvd.allreduce(torch.ones(1), op=hvd.Sum).item() == n
    out, _ = ringred.alltoall(np.full(n, float(r)))
    assert out.tolist() == [float(q) for q in range(n)]


def body() -> None:
    hvd.init()
    check_process_set_roots()
    check_integer_scaling()
    check_gradients()
    check_async_api()
    check_sparse_optimizer()
    check_optimizer_process_set()
    check_broadcast_optimizer_state()
    check_join()
    check_failures_end_everywhere()


if __name__ == "__main__":
    main(body)
