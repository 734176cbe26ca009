"""One rank dies (SIGKILL) in the middle of a loop of collectives; the survivors must report
it, naming the dead rank, within seconds (any transport; run with mpiexec
-disable-auto-cleanup so that the survivors keep running).

Usage: python -m tests.workers.deadpeer VICTIM MODE      (MODE: sync or async)
Each rank prints ``PID <rank> <pid>``; the victim prints ``KILLED <time>`` just before it
dies; a survivor prints ``RANK <r> <ExceptionName> <seconds since the kill> <message>`` and
exits 3 without MPI_Finalize.
"""

from __future__ import annotations

import os
import signal
import sys
import time

import numpy as np

import ringred


def main() -> None:
    victim, mode = int(sys.argv[1]), sys.argv[2]
    ringred.init()
    r = ringred.rank()
    print(f"PID {r} {os.getpid()}", flush=True)
    small = np.ones(16, np.float32)
    large = np.ones(300_000, np.float32)  # the pipelined paths
    kill_at = int(os.environ.get("KILL_AT", "50"))
    try:
        for i in range(1_000_000):
            if r == victim and i == kill_at:
                print(f"KILLED {time.time():.6f}", flush=True)
                os.kill(os.getpid(), signal.SIGKILL)
            x = large if i % 3 == 0 else small
            if mode == "async":
                ringred.synchronize(ringred.allreduce_async(x, name=f"t{i % 4}"))
            elif i % 5 == 4:
                ringred.broadcast(x, root_rank=i % ringred.size())
            else:
                ringred.allreduce(x, op=ringred.Sum)
    except ringred.RingredError as exc:
        msg = str(exc).replace("\n", " ")
        print(f"RANK {r} {type(exc).__name__} {time.time():.6f} {msg}", flush=True)
        time.sleep(float(os.environ.get("DEADPEER_LINGER", "2")))
        os._exit(3)
    print(f"RANK {r} FINISHED (never noticed)", flush=True)
    os._exit(5)


if __name__ == "__main__":
    main()
