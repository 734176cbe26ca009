"""An allreduce of more than 2**31 elements (MPI counts are int: ringred must chunk)."""

import numpy as np

import ringred

from .common import main


def body() -> None:
    n, r = ringred.size(), ringred.rank()
    count = 2**31 + 5
    x = np.full(count, r + 1, np.uint8)
    x[-1] = 7 * (r + 1)
    ringred.allreduce(x, op=ringred.Sum, out=x)
    want = n * (n + 1) // 2
    assert x[0] == want and x[count // 2] == want and x[-2] == want, (x[0], x[-2])
    assert x[-1] == (7 * want) % 256
    assert int(np.count_nonzero(x[:-1] != want)) == 0


if __name__ == "__main__":
    main(body)
