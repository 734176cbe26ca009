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
    b = ringred.broadcast(np.array([r]), root_rank=0, process_set=mine)
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
    assert ringred.remove_process_set(evens)
    if odds is not None:
        assert ringred.remove_process_set(odds)
    ringred.barrier()


if __name__ == "__main__":
    main(body)
