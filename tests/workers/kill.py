"""One rank dies (SIGKILL) or hangs in the middle of a loop of allreduces; the others must
notice.

Usage: python -m tests.workers.kill VICTIM [kill|hang]
KILL_SHARED_BUFFERS=1: the large allreduces use a shared buffer (ringred.empty).
KILL_DEVICE=1: they use a fake device array (the device transport, e.g. CUDA IPC).
Each rank prints ``PID <rank> <pid>`` first.  A survivor that notices prints
``RANK <r> <ExceptionName> <message>``, lingers a moment (so that the other survivors get to
report too before mpiexec takes the job down) and exits 3 without MPI_Finalize.
"""

from __future__ import annotations

import os
import signal
import sys
import time

import numpy as np

import ringred


def main() -> None:
    victim = int(sys.argv[1])
    mode = sys.argv[2] if len(sys.argv) > 2 else "kill"
    ringred.init()
    r = ringred.rank()
    print(f"PID {r} {os.getpid()}", flush=True)
    small = np.ones(16, np.float32)
    large = np.ones(300_000, np.float32)  # the chunked path
    shared = os.environ.get("KILL_SHARED_BUFFERS") == "1"
    if shared:  # peers read it in place: the victim dies while they read its memory
        large = ringred.empty(300_000, np.float32)
        large.fill(1)
    if os.environ.get("KILL_DEVICE") == "1":  # peers map its device memory
        from ringred.testing import FakeDeviceArray

        large = FakeDeviceArray.from_host(large)
    try:
        for i in range(1_000_000):
            if r == victim and i == int(os.environ.get("KILL_AT", "300")):
                if mode == "kill":
                    os.kill(os.getpid(), signal.SIGKILL)
                time.sleep(3600)
            if shared and i % 3 == 0:
                ringred.allreduce(large, op=ringred.Max, out=large if i % 2 else None)
            else:
                ringred.allreduce(large if i % 3 == 0 else small, op=ringred.Sum)
    except ringred.RingredError as exc:
        print(f"RANK {r} {type(exc).__name__} {exc}", flush=True)
        time.sleep(1.0)
        os._exit(3)
    print(f"RANK {r} FINISHED (never noticed)", flush=True)
    os._exit(5)


if __name__ == "__main__":
    main()
