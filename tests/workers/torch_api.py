"""Horovod-style tests of ringred.torch: size-agnostic expected values, every function.

Run with mpiexec -n N.  Written like horovod/test/parallel/test_torch.py so that the same
assertions would hold against Horovod.
"""

from __future__ import annotations

import sys

import torch

import ringred.torch as hvd

from .common import main

DTYPES = [torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.float16,
          torch.bfloat16, torch.float32, torch.float64]
FLOATS = [torch.float16, torch.bfloat16, torch.float32, torch.float64]


def _rand(shape, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    if dtype == torch.uint8:
        return torch.randint(0, 20, shape, generator=g).to(dtype)
    return torch.randint(-20, 20, shape, generator=g).to(dtype)


def test_topology():
    assert 0 <= hvd.rank() < hvd.size()
    assert 0 <= hvd.local_rank() < hvd.local_size()
    assert hvd.cross_size() * hvd.local_size() == hvd.size()
    assert hvd.cross_rank() == 0
    assert hvd.mpi_built() and hvd.mpi_enabled() and hvd.mpi_threads_supported()
    assert not hvd.gloo_built() and not hvd.nccl_built() and not hvd.rocm_built()
    assert hvd.is_initialized()


def test_allreduce_sum_and_average():
    size = hvd.size()
    for dtype in DTYPES:
        for dim in (1, 2, 3):
            tensor = _rand([17] * dim, dtype, seed=1234 + dim)  # same on every rank
            summed = hvd.allreduce(tensor, average=False, name=f"sum.{dtype}.{dim}")
            multiplied = tensor.to(torch.int64 if not dtype.is_floating_point else torch.float64)
            expected = multiplied * size
            if dtype in (torch.uint8, torch.int8, torch.int16, torch.int32):
                expected = expected.to(dtype)  # wraps like the C arithmetic
            assert summed.dtype == dtype and summed.shape == tensor.shape
            assert torch.equal(summed.to(expected.dtype), expected), (dtype, dim)
            if dtype.is_floating_point:
                averaged = hvd.allreduce(tensor, op=hvd.Average)
                assert torch.allclose(averaged.double(), tensor.double(), rtol=1e-2)
    for op, fn in ((hvd.Min, torch.minimum), (hvd.Max, torch.maximum)):
        mine = _rand([5, 4], torch.float32, seed=hvd.rank())
        got = hvd.allreduce(mine, op=op)
        want = _rand([5, 4], torch.float32, seed=0)
        for r in range(1, size):
            want = fn(want, _rand([5, 4], torch.float32, seed=r))
        assert torch.equal(got, want)
    prod = hvd.allreduce(torch.full((3,), 2.0), op=hvd.Product)
    assert torch.equal(prod, torch.full((3,), 2.0**size))
    scaled = hvd.allreduce(torch.ones(4), op=hvd.Sum, prescale_factor=0.5, postscale_factor=3.0)
    assert torch.allclose(scaled, torch.full((4,), 1.5 * size))


def test_allreduce_inplace_and_grad():
    size = hvd.size()
    t = torch.arange(10, dtype=torch.float64)
    out = hvd.allreduce_(t, op=hvd.Sum)
    assert out is t and torch.equal(t, torch.arange(10, dtype=torch.float64) * size)
    x = torch.ones(5, requires_grad=True)
    y = hvd.allreduce(x, op=hvd.Sum)
    y.sum().backward()
    assert torch.equal(x.grad, torch.full((5,), float(size)))
    x = torch.ones(5, requires_grad=True)
    hvd.allreduce(x).sum().backward()  # Average: gradient averaged too
    assert torch.allclose(x.grad, torch.ones(5))


def test_compression():
    t = torch.rand(100, dtype=torch.float32, generator=torch.Generator().manual_seed(5))
    for comp in (hvd.Compression.fp16, hvd.Compression.bf16):
        c, ctx = comp.compress(t)
        assert c.dtype in (torch.float16, torch.bfloat16)
        back = comp.decompress(c, ctx)
        assert back.dtype == torch.float32 and torch.allclose(back, t, rtol=1e-2)
        red = hvd.allreduce(t, compression=comp, op=hvd.Sum)
        assert red.dtype == torch.float32
        assert torch.allclose(red, t * hvd.size(), rtol=2e-2)


def test_allgather():
    size, rank = hvd.size(), hvd.rank()
    for dtype in DTYPES:
        tensor = torch.full((rank + 1, 3), rank, dtype=torch.int64).to(dtype)
        gathered = hvd.allgather(tensor)
        assert gathered.shape == (size * (size + 1) // 2, 3) and gathered.dtype == dtype
        o = 0
        for r in range(size):
            assert torch.all(gathered[o:o + r + 1].to(torch.int64) == r)
            o += r + 1
    x = torch.ones(rank + 1, 2, requires_grad=True)
    g = hvd.allgather(x)
    (g * 2).sum().backward()
    # Horovod's convention: the gradient is averaged over ranks (each loss counts 1/size)
    assert torch.equal(x.grad, torch.full((rank + 1, 2), 2.0))
    lst = hvd.grouped_allgather([torch.tensor([rank]), torch.tensor([rank, rank])])
    assert lst[0].tolist() == list(range(size)) and len(lst[1]) == 2 * size


def test_broadcast():
    size, rank = hvd.size(), hvd.rank()
    for dtype in DTYPES:
        for root in range(size):
            tensor = torch.full((4, 3), rank, dtype=torch.int64).to(dtype)
            got = hvd.broadcast(tensor, root)
            assert torch.all(got.to(torch.int64) == root) and got.dtype == dtype
            assert torch.all(tensor.to(torch.int64) == rank)  # input untouched
            t2 = tensor.clone()
            assert hvd.broadcast_(t2, root) is t2 and torch.all(t2.to(torch.int64) == root)
    x = torch.ones(3, requires_grad=True)
    hvd.broadcast(x, 0).sum().backward()
    want = 1.0 if rank == 0 else 0.0  # averaged, on the root only (Horovod)
    assert torch.equal(x.grad, torch.full((3,), want))


def test_alltoall():
    size, rank = hvd.size(), hvd.rank()
    tensor = torch.arange(size * 2, dtype=torch.float32) + 100 * rank
    out = hvd.alltoall(tensor)
    want = torch.cat([torch.arange(2 * rank, 2 * rank + 2, dtype=torch.float32) + 100 * r
                      for r in range(size)])
    assert torch.equal(out, want)
    splits = torch.tensor([r + 1 for r in range(size)], dtype=torch.int32)
    t = torch.full((int(splits.sum()), 2), float(rank), requires_grad=True)
    out, received = hvd.alltoall(t, splits=splits)
    assert received.tolist() == [rank + 1] * size
    assert out.shape == ((rank + 1) * size, 2)
    (out * 3).sum().backward()
    assert torch.equal(t.grad, torch.full_like(t, 3.0))


def test_reducescatter():
    size, rank = hvd.size(), hvd.rank()
    rows = size * 2 + 1
    tensor = torch.arange(rows * 2, dtype=torch.float64).reshape(rows, 2)
    out = hvd.reducescatter(tensor, op=hvd.Sum)
    split = [rows // size + (1 if r < rows % size else 0) for r in range(size)]
    lo = sum(split[:rank])
    assert torch.equal(out, tensor[lo:lo + split[rank]] * size)
    avg = hvd.reducescatter(tensor)
    assert torch.allclose(avg, tensor[lo:lo + split[rank]])
    x = torch.ones(rows, 2, requires_grad=True)
    hvd.reducescatter(x, op=hvd.Sum).sum().backward()
    assert torch.equal(x.grad, torch.full((rows, 2), float(size)))  # Sum: times size (Horovod)
    outs = hvd.grouped_reducescatter([tensor, tensor], op=hvd.Sum)
    assert all(torch.equal(o, out) for o in outs)


def test_objects_and_barrier():
    size, rank = hvd.size(), hvd.rank()
    assert hvd.broadcast_object({"a": rank}, root_rank=size - 1) == {"a": size - 1}
    assert hvd.allgather_object(rank * 2) == [r * 2 for r in range(size)]
    hvd.barrier()


def test_process_sets():
    size, rank = hvd.size(), hvd.rank()
    if size < 2:
        return
    ps = hvd.add_process_set([0, size - 1])
    if rank in (0, size - 1):
        got = hvd.allreduce(torch.tensor([float(rank)]), op=hvd.Sum, process_set=ps)
        assert got.item() == float(size - 1)
        g = hvd.allgather(torch.tensor([rank]), process_set=ps)
        assert g.tolist() == [0, size - 1]
    assert hvd.remove_process_set(ps)


def test_errors():
    size, rank = hvd.size(), hvd.rank()
    try:
        hvd.allreduce(torch.ones(3), op=hvd.Adasum)
    except NotImplementedError:
        pass
    else:
        raise AssertionError("Adasum must raise NotImplementedError")
    if size < 2:
        return
    # mismatched shapes: an error on every rank, a RuntimeError like HorovodInternalError
    try:
        hvd.allreduce(torch.ones(3 + (rank == 0)))
    except hvd.HorovodInternalError as e:
        assert isinstance(e, RuntimeError) and "shape" in str(e)
    else:
        raise AssertionError("mismatch must raise")
    # wrong (mismatched) root ranks
    try:
        hvd.broadcast(torch.ones(2), root_rank=rank % 2)
    except hvd.HorovodInternalError as e:
        assert "root rank" in str(e)
    else:
        raise AssertionError("root mismatch must raise")
    # dtype mismatch
    try:
        hvd.allreduce(torch.ones(2, dtype=torch.float32 if rank else torch.float64))
    except hvd.HorovodInternalError as e:
        assert "data type" in str(e)
    else:
        raise AssertionError("dtype mismatch must raise")
    hvd.allreduce(torch.ones(2))  # still usable


def test_async_and_grouped():
    size, rank = hvd.size(), hvd.rank()
    t = torch.arange(6, dtype=torch.float32)
    h = hvd.allreduce_async(t, op=hvd.Sum, name="async.a")
    assert torch.equal(hvd.synchronize(h), t * size)
    t2 = t.clone()
    h = hvd.allreduce_async_(t2, op=hvd.Sum, name="async.b")
    while not hvd.poll(h):
        pass
    assert hvd.synchronize(h) is t2 and torch.equal(t2, t * size)
    outs = hvd.grouped_allreduce([t, t * 2], op=hvd.Sum, name="grp")
    assert torch.equal(outs[0], t * size) and torch.equal(outs[1], t * 2 * size)
    ts = [t.clone(), (t * 3).clone()]
    hvd.grouped_allreduce_(ts, op=hvd.Sum, name="grp_")
    assert torch.equal(ts[1], t * 3 * size)
    x = torch.ones(4, requires_grad=True)
    y = hvd.grouped_allreduce([x], op=hvd.Sum)[0]
    y.sum().backward()
    assert torch.equal(x.grad, torch.full((4,), float(size)))
    b = torch.full((3,), float(rank))
    assert torch.all(hvd.synchronize(hvd.broadcast_async(b, 0, name="bc")) == 0)
    hb = hvd.broadcast_async_(b, size - 1, name="bc_")
    assert hvd.synchronize(hb) is b and torch.all(b == size - 1)
    g = hvd.synchronize(hvd.allgather_async(torch.tensor([rank]), name="ag"))
    assert g.tolist() == list(range(size))
    # ranks submit named tensors in opposite orders: matched by name
    names = [f"ord.{i}" for i in range(5)]
    order = names if rank % 2 == 0 else names[::-1]
    hs = {nm: hvd.allreduce_async(torch.full((2,), float(i)), op=hvd.Sum, name=nm)
          for i, nm in sorted(enumerate(names), key=lambda p: order.index(p[1]))}
    for i, nm in enumerate(names):
        assert torch.equal(hvd.synchronize(hs[nm]), torch.full((2,), float(i * size)))
    if size > 1:
        ps = hvd.add_process_set([0, 1])
        if rank in (0, 1):
            r = hvd.synchronize(hvd.allreduce_async(torch.ones(2), op=hvd.Sum, name="ps",
                                                    process_set=ps))
            assert torch.equal(r, torch.full((2,), 2.0))
        hvd.remove_process_set(ps)
    assert hvd.join() in range(size)


TESTS = [test_topology, test_allreduce_sum_and_average, test_allreduce_inplace_and_grad,
         test_compression, test_allgather, test_broadcast, test_alltoall, test_reducescatter,
         test_objects_and_barrier, test_process_sets, test_errors, test_async_and_grouped]


def body() -> None:
    only = sys.argv[1:]
    for t in TESTS:
        if not only or t.__name__ in only:
            t()


if __name__ == "__main__":
    hvd.init()
    main(body)
