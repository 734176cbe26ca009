"""Process sets: collectives on a subset of ranks, others unaffected."""

import numpy as np

import ringred

from .common import main


def body() -> None:
    n, r = ringred.size(), ringred.rank()
    evens = ringred.add_process_set([q for q in range(n) if q % 2 == 0])
    odds = ringred.add_process_set([q for q in range(n) if q % 2 == 1]) if n > 1 else None
    mine = evens if r % 2 == 0 else odds
    members = mine.ranks
    got = ringred.allreduce(np.array([float(r)]), op=ringred.Sum, process_set=mine)
    assert got[0] == sum(members), (got, members)
    b = ringred.broadcast(np.array([r]), root_rank=members[0], process_set=mine)
    assert b[0] == members[0]
    g = ringred.allgather(np.array([r]), process_set=mine)
    assert list(g) == members
    assert ringred.allgather_object(r, process_set=mine) == members
    assert mine.size() == len(members) and mine.rank() == members.index(r)
    # the global set still works, and a set this rank is not in refuses clearly
    assert ringred.allreduce(np.ones(2), op=ringred.Sum)[0] == n
    other = odds if mine is evens else evens
    if other is not None:
        try:
            ringred.allreduce(np.ones(1), process_set=other)
        except ValueError as e:
            assert "not in process set" in str(e)
        else:
            raise AssertionError("expected ValueError")
    check_optimizers(mine, other)
    assert ringred.remove_process_set(evens)
    if odds is not None:
        assert ringred.remove_process_set(odds)
    ringred.barrier()


def check_optimizers(mine, other) -> None:
    """DistributedOptimizer over a process set: gradients (and, with average_every,
    parameters) are averaged within the set, each set on its own; a non-member cannot wrap."""
    from ringred.optim import SGD

    r = ringred.rank()
    members = mine.ranks
    p = {"w": np.zeros(3)}
    opt = ringred.DistributedOptimizer(SGD(p, lr=1.0), process_set=mine)
    for step in range(1, 3):
        opt.step({"w": np.full(3, r + 1.0)})
        assert np.array_equal(p["w"], np.full(3, -step * np.mean([q + 1.0 for q in members])))
    p = {"w": np.full(2, float(r))}
    opt = ringred.DistributedOptimizer(SGD(p, lr=1.0), average_every=1, process_set=mine)
    opt.step({"w": np.zeros(2)})
    assert np.array_equal(p["w"], np.full(2, np.mean(members))), (p, members)
    if other is not None:
        try:
            ringred.DistributedOptimizer(SGD({"w": np.zeros(1)}, lr=1.0), process_set=other)
        except ValueError as e:
            assert "not in process set" in str(e), e
        else:
            raise AssertionError("a non-member wrapped an optimizer over the set")
    try:
        import torch
    except ImportError:
        return
    import ringred.torch as hvd

    w = torch.nn.Parameter(torch.zeros(4, dtype=torch.float64))
    topt = hvd.DistributedOptimizer(torch.optim.SGD([w], lr=1.0),
                                    named_parameters=[("w", w)], process_set=mine)
    for step in range(1, 3):
        topt.zero_grad()
        (w * (r + 1.0)).sum().backward()
        topt.step()
        want = -step * np.mean([q + 1.0 for q in members])
        assert np.array_equal(w.detach().numpy(), np.full(4, want)), (w, want)


if __name__ == "__main__":
    main(body)
