"""The framework adapters are optional: ringred imports without JAX or MXNet, and their
modules say what to install when the framework is missing."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from .mpi import ROOT, worker_env


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=worker_env(),
                          capture_output=True, text=True, timeout=60)


def test_ringred_imports_no_framework():
    res = _python("import sys, ringred; "
                  "print(sorted(m for m in ('jax', 'optax', 'mxnet') if m in sys.modules))")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"


@pytest.mark.parametrize("module,framework", [("ringred.jax", "jax"),
                                              ("ringred.mxnet", "mxnet")])
def test_missing_framework_is_named(module, framework):
    if importlib.util.find_spec(framework) is not None:
        pytest.skip(f"{framework} is installed here")
    res = _python(f"import {module}")
    assert res.returncode != 0
    assert f"{module} needs" in res.stderr and "pip install" in res.stderr, res.stderr
