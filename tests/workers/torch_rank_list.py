"""ringred.torch.init with a list of global ranks: a rank outside the list gets ValueError.

Run with mpiexec -n 2 (rank 1 is left out of ``init([0])``)."""

from __future__ import annotations

import ringred
import ringred.torch as hvd


def run() -> None:
    from mpi4py import MPI

    r = MPI.COMM_WORLD.Get_rank()
    if r == 0:
        hvd.init([0])
        assert hvd.size() == 1 and hvd.rank() == 0, (hvd.size(), hvd.rank())
        hvd.shutdown()
    else:
        try:
            hvd.init([0])
        except ValueError as e:
            assert "rank 1 is not in init's rank list [0]" in str(e), str(e)
            assert not isinstance(e, TypeError)
        else:
            raise AssertionError("init([0]) on rank 1 did not raise ValueError")
        assert not ringred.is_initialized()
    print(f"RANK {r} OK", flush=True)


if __name__ == "__main__":
    run()
