"""One rank dies (SIGKILL), hangs, or raises out of its script in the middle of a loop of
collectives; the survivors must report it, naming that rank, within seconds.

Usage: python -m tests.workers.deadpeer VICTIM MODE [HOW]
MODE: sync (allreduce and broadcast) or async (named allreduces through the engine).
HOW: kill (default), hang (sleeps), raise (an uncaught RuntimeError).
Run kill and hang under tests.workers.linger (hydra takes the job down as soon as it sees a
rank die of a signal).
Each rank prints ``PID <rank> <pid>``; the victim prints ``KILLED <time>`` just before it
fails; a survivor prints ``RANK <r> <ExceptionName> <time> <message>``, lingers a moment (so
that the other survivors report too) and exits 3 without MPI_Finalize.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import time

import numpy as np

import ringred

from .cases import set_test_host


def main() -> None:
    victim, mode = int(sys.argv[1]), sys.argv[2]
    how = sys.argv[3] if len(sys.argv) > 3 else "kill"
    if how == "raise":
        # registered before ringred's own exit hook, so it runs after it: the raising rank
        # has told its peers and stays a while, so that they report before mpiexec ends the
        # job (survivors leave through os._exit and never run it)
        atexit.register(time.sleep, 3)
    set_test_host()  # RINGRED_TEST_HOSTS: simulated hosts
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
                if how == "kill":
                    os.kill(os.getpid(), signal.SIGKILL)
                elif how == "raise":
                    raise RuntimeError("planted crash")
                time.sleep(4)  # hang: long past the survivors' RINGRED_TIMEOUT_SECONDS
                os._exit(0)
            x = large if i % 3 == 0 else small
            if mode == "async":
                ringred.synchronize(ringred.allreduce_async(x, name=f"t{i % 4}"))
            elif i % 5 == 4:
                ringred.broadcast(x, root_rank=i % ringred.size())
            else:
                ringred.allreduce(x, op=ringred.Sum)
    except ringred.RingredError as exc:
        report(r, exc)
    print(f"RANK {r} FINISHED (never noticed)", flush=True)
    os._exit(5)


def report(r: int, exc: BaseException) -> None:
    """A survivor's line ``RANK <r> <ExceptionName> <time> <message>``; it lingers a moment
    (so that the other survivors report too) and exits 3 without MPI_Finalize."""
    msg = str(exc).replace("\n", " ")
    print(f"RANK {r} {type(exc).__name__} {time.time():.6f} {msg}", flush=True)
    time.sleep(1.0)
    os._exit(3)


if __name__ == "__main__":
    main()
