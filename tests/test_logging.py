"""RINGRED_LOG / the ``ringred`` logger: off by default; info once per communicator and
engine (transport, kernels, settings and their source); debug adds each call's plan."""

from __future__ import annotations

import subprocess
import sys

from .mpi import ROOT, mpiexec, worker_env

SCRIPT = """
import numpy as np, ringred
ringred.init()
ringred.allreduce(np.ones(10, np.float32))
ringred.allreduce(np.ones(1 << 17, np.float32), name="big")
ringred.allreduce_async(np.ones(4), name="a").wait()
ringred.allreduce_async(np.ones(4), name="b").wait()
"""


def _run(**env: str) -> subprocess.CompletedProcess:
    res = subprocess.run([mpiexec(), "-n", "2", sys.executable, "-c", SCRIPT], cwd=ROOT,
                         env=worker_env(**env), capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    return res


def test_off_by_default():
    res = _run()
    assert "ringred INFO" not in res.stderr and "ringred DEBUG" not in res.stderr, res.stderr


def test_info_once_per_communicator_and_engine():
    res = _run(RINGRED_LOG="info", RINGRED_TRANSPORT="mpi", RINGRED_SMALL_BYTES="4096")
    err = res.stderr
    for r in (0, 1):
        assert err.count(f"communicator: rank {r} of 2") == 1, err
        assert err.count(f"engine: rank {r} of 2") == 1, err
    assert "transport mpi (RINGRED_TRANSPORT=mpi)" in err, err
    assert "RINGRED_SMALL_BYTES=4096 (environment)" in err, err
    assert "RINGRED_SEGMENT_BYTES=262144 (default)" in err, err
    assert "cpu kernels " in err and "RINGRED_FUSION_THRESHOLD=" in err, err
    assert "ringred DEBUG" not in err, err


def test_debug_logs_each_calls_plan():
    res = _run(RINGRED_LOG="debug", RINGRED_TRANSPORT="mpi", RINGRED_SMALL_BYTES="4096")
    err = res.stderr
    for r in (0, 1):
        assert f"rank {r}: allreduce: shape (10,) float32 (40 B)" in err, err
        assert f"rank {r}: allreduce: shape (131072,) float32 (524288 B) 'big'" in err, err
    assert "mpi latency path, recursive doubling (<= RINGRED_SMALL_BYTES=4096)" in err, err
    assert "mpi segmented ring (> RINGRED_SMALL_BYTES=4096" in err, err


def test_stdlib_logger_without_the_variable():
    code = ("import io, logging, ringred\n"
            "buf = io.StringIO(); log = logging.getLogger('ringred')\n"
            "log.addHandler(logging.StreamHandler(buf)); log.setLevel(logging.INFO)\n"
            "ringred.init(); ringred.shutdown()\n"
            "print(buf.getvalue())\n")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=worker_env(),
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert "communicator: rank 0 of 1 (local 0 of 1), transport" in res.stdout, res.stdout
