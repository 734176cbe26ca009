"""Run in a private mount namespace whose /dev/shm is a tiny tmpfs: the shared segment cannot
be reserved, so init must fall back to the MPI transport on every rank with one
RuntimeWarning that says why, and a 12 MiB allreduce must be right (no SIGBUS).

Usage: python -m tests.workers.shm_full
"""

from __future__ import annotations

import warnings

import numpy as np

import ringred


def main() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ringred.init()
    r, n = ringred.rank(), ringred.size()
    ours = [w for w in caught if issubclass(w.category, RuntimeWarning)
            and "ringred" in str(w.message)]
    assert len(ours) == 1, [str(w.message) for w in caught]
    text = str(ours[0].message)
    for needle in ("MPI transport", "/dev/shm", "MiB free", "RINGRED_TRANSPORT"):
        assert needle in text, text
    assert ringred.transport() == "mpi", ringred.transport()
    x = np.full(3 << 20, r + 1, np.float32)  # 12 MiB
    out = ringred.allreduce(x, op=ringred.Sum)
    assert np.all(out == n * (n + 1) / 2), out[:4]
    print(f"RANK {r} OK {text}", flush=True)


if __name__ == "__main__":
    main()
