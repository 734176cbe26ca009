"""A Horovod-style PyTorch script on CUDA through ``import ringred.torch as hvd``.

The way Horovod's documentation writes it (model and data on ``cuda:local_rank``):
``broadcast_parameters`` / ``broadcast_optimizer_state`` from rank 0 (momentum buffers that
differ by rank before), ``DistributedOptimizer`` with fp16 compression, then the tensor API
on CUDA tensors: allreduce (sync, async, in place, Sum/Average/Min/Max), allgather with
rank-dependent first dimensions, broadcast from every root, grouped allreduce, and join
(rank 0 reduces once more after the others joined: their share is zeros).

Usage: python -m tests.workers.gpu_horovod [cuda|fake]
(fake: torch CPU tensors through the device path on the fake backend, no GPU)
"""

from __future__ import annotations

import sys

import torch
import torch.nn.functional as F

import ringred.torch as hvd

from .common import main, same_on_all_ranks

STEPS, BATCH, TOL_FP16 = 4, 32, 2e-3
MODE = sys.argv[1] if len(sys.argv) > 1 else "cuda"


def net() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(20, 32), torch.nn.Tanh(),
                               torch.nn.Linear(32, 5))


def on(t: torch.Tensor, dev: torch.device) -> bool:
    """t is a tensor on the device under test."""
    return isinstance(t, torch.Tensor) and t.device.type == dev.type


def identical(tensors) -> bool:
    return all(same_on_all_ranks(t.detach().cpu().numpy()) for t in tensors)


def check_training(dev: torch.device) -> None:
    n, r = hvd.size(), hvd.rank()
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(BATCH, 20, generator=g).to(dev), torch.randint(0, 5, (BATCH,),
                                                                      generator=g).to(dev)
    torch.manual_seed(10 + r)  # deliberately different weights per rank
    model = net().to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=0.1 * n, momentum=0.9)
    # one local step on rank-specific data: momentum buffers differ by rank
    F.cross_entropy(model(x[r::n] * (r + 1)), y[r::n]).backward()
    opt.step()
    opt.zero_grad()
    assert n == 1 or not identical(model.parameters())

    hvd.broadcast_parameters(model.state_dict(), root_rank=0)
    hvd.broadcast_optimizer_state(opt, root_rank=0)
    assert identical(model.parameters()), "broadcast_parameters"
    bufs = [opt.state[p]["momentum_buffer"] for p in model.parameters()]
    assert all(on(b, dev) for b in bufs) and identical(bufs), "broadcast_optimizer_state"
    start = {k: v.clone() for k, v in model.state_dict().items()}
    start_bufs = [b.clone() for b in bufs]

    opt = hvd.DistributedOptimizer(opt, named_parameters=model.named_parameters(),
                                   compression=hvd.Compression.fp16, op=hvd.Average)
    per = BATCH // n
    for _ in range(STEPS):
        opt.zero_grad()
        F.cross_entropy(model(x[r * per:(r + 1) * per]), y[r * per:(r + 1) * per]).backward()
        opt.step()
    assert identical(model.parameters()), "DistributedOptimizer: ranks diverged"

    # reference: one process, whole batch, the same starting point (lr * n / n: the averaged
    # gradient of n equal shards is the full-batch gradient; n * lr was Horovod's scaling)
    ref = net().to(dev)
    ref.load_state_dict(start)
    ref_opt = torch.optim.SGD(ref.parameters(), lr=0.1 * n, momentum=0.9)
    for p, b in zip(ref.parameters(), start_bufs, strict=True):
        ref_opt.state[p]["momentum_buffer"] = b.clone()
    for _ in range(STEPS):
        ref_opt.zero_grad()
        F.cross_entropy(ref(x), y).backward()
        ref_opt.step()
    worst = 0.0
    for (name, p), q in zip(model.named_parameters(), ref.parameters(), strict=True):
        err = float((p.detach() - q.detach()).abs().max())
        worst = max(worst, err)
        assert err <= TOL_FP16, f"fp16-compressed training: {name} off by {err:.3g}"
    print(f"rank {r}: fp16-compressed training within {worst:.2g} of full-batch fp32",
          flush=True)


def check_ops(dev: torch.device) -> None:
    n, r = hvd.size(), hvd.rank()
    t = torch.arange(1000, dtype=torch.float32, device=dev) * (r + 1)
    tri = n * (n + 1) / 2
    s = hvd.allreduce(t, op=hvd.Sum, name="sum")
    assert on(s, dev) and torch.equal(s, torch.arange(1000, dtype=torch.float32, device=dev)
                                     * tri)
    a = hvd.allreduce(t, name="avg")  # Average by default
    assert torch.allclose(a, torch.arange(1000, device=dev, dtype=torch.float32) * tri / n)
    for op, want in ((hvd.Min, 1.0), (hvd.Max, float(n))):
        m = hvd.allreduce(torch.full((33,), float(r + 1), device=dev), op=op)
        assert on(m, dev) and float(m.min()) == float(m.max()) == want, op
    c = hvd.allreduce(torch.full((1001,), 1.0 + r, device=dev), op=hvd.Sum,
                      compression=hvd.Compression.fp16)
    assert c.dtype == torch.float32 and on(c, dev) and float(c.min()) == tri
    inplace = torch.full((4097,), float(r), device=dev)
    assert hvd.allreduce_(inplace, op=hvd.Sum) is inplace and float(inplace[0]) == tri - n
    h = hvd.allreduce_async_(inplace, op=hvd.Sum, name="async_")
    assert hvd.synchronize(h) is inplace and float(inplace.max()) == (tri - n) * n

    ga = hvd.allgather(torch.full((r + 1, 3), r, dtype=torch.int64, device=dev))
    assert on(ga, dev) and ga.shape == (n * (n + 1) // 2, 3)
    o = 0
    for q in range(n):
        assert bool((ga[o:o + q + 1] == q).all())
        o += q + 1
    gh = hvd.synchronize(hvd.allgather_async(torch.tensor([r], device=dev), name="ag"))
    assert on(gh, dev) and gh.tolist() == list(range(n))

    for root in range(n):
        b = hvd.broadcast(torch.full((5, 7), float(r), device=dev), root_rank=root,
                          name=f"bc{root}")
        assert on(b, dev) and float(b.min()) == float(b.max()) == root
    bt = torch.full((100,), float(r), dtype=torch.float64, device=dev)
    hvd.synchronize(hvd.broadcast_async_(bt, n - 1, name="bc_"))
    assert float(bt.min()) == n - 1

    xs = [torch.full((k + 1,), float(k + r), device=dev) for k in range(10)]
    outs = hvd.grouped_allreduce(xs, op=hvd.Sum, name="grp")
    for k, o_ in enumerate(outs):
        assert on(o_, dev) and float(o_.min()) == float(o_.max()) == k * n + n * (n - 1) / 2
    hvd.grouped_allreduce_(xs, op=hvd.Average, name="grp_")
    assert abs(float(xs[3][0]) - (3 + (n - 1) / 2)) < 1e-6


def check_join(dev: torch.device) -> None:
    n, r = hvd.size(), hvd.rank()
    if r == 0:  # one more batch than the others: they take part with zeros after joining
        h = hvd.allreduce_async(torch.full((1000,), 2.0, device=dev), op=hvd.Sum,
                                name="after-join")
        got = hvd.synchronize(h)
        assert on(got, dev) and float(got.min()) == float(got.max()) == 2.0, float(got.max())
    last = hvd.join()
    assert last == (0 if n > 1 else r), last
    after = hvd.allreduce(torch.ones(3, device=dev), op=hvd.Sum, name="after")
    assert float(after.sum()) == 3 * n


def body() -> None:
    hvd.init()
    if MODE == "fake":
        from ringred.testing import torch_cpu_as_device

        torch_cpu_as_device(True)
        torch.set_num_threads(1)
        dev = torch.device("cpu")
    else:
        torch.backends.cuda.matmul.allow_tf32 = False
        dev = torch.device("cuda", hvd.local_rank() % torch.cuda.device_count())
        torch.cuda.set_device(dev)
    check_training(dev)
    check_ops(dev)
    check_join(dev)
    print(f"rank {hvd.rank()}: Horovod-style script on {dev} checked", flush=True)


if __name__ == "__main__":
    main(body)
