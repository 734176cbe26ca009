"""Run ``python -m tests.workers.<module> args`` as a child of this process and, when the child
dies of a signal, stay around for a few seconds before exiting with its status.

mpiexec (hydra) takes the whole job down as soon as one of its processes dies; under this
wrapper hydra sees the wrapper, not the rank, so the surviving ranks get time to notice the
dead one themselves.  The child inherits the PMI connection (no MPI in this process).

Usage: python -m tests.workers.linger SECONDS MODULE [ARGS...]
"""

from __future__ import annotations

import os
import sys
import time


def main() -> None:
    linger = float(sys.argv[1])
    argv = [sys.executable, "-m", f"tests.workers.{sys.argv[2]}", *sys.argv[3:]]
    pid = os.fork()
    if pid == 0:
        os.execv(sys.executable, argv)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        time.sleep(linger)
        os._exit(128 + os.WTERMSIG(status))
    os._exit(os.WEXITSTATUS(status))


if __name__ == "__main__":
    main()
