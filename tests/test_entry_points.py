"""What a newcomer touches first: the package namespace, the exceptions, the console script,
``--plot`` without matplotlib, ``ringred.torch.init`` with a rank list."""

from __future__ import annotations

import importlib
import subprocess
import sys
import tomllib

import pytest

from .mpi import ROOT, run_mpi, worker_env


def _python(code: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=worker_env(),
                          capture_output=True, text=True, timeout=timeout)


def test_subpackages_load_lazily_on_attribute_access():
    res = _python(
        "import sys, ringred\n"
        "lazy = ('ringred.data', 'ringred.bench', 'ringred.torch', 'torch', 'ml_dtypes')\n"
        "print(sorted(m for m in lazy if m in sys.modules))\n"
        "print(ringred.data.shard(10, 0, 2, seed=0, epoch=0).tolist())\n"
        "print(type(ringred.optim.SGD).__name__, 'ringred.data' in sys.modules)\n"
        "print('data' in dir(ringred))\n"
        "try:\n    ringred.nonexistent\nexcept AttributeError as e:\n    print('AE', e)\n")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == "[]", lines  # nothing of these was imported by `import ringred`
    assert len(eval(lines[1])) == 5, lines  # noqa: S307 - our own output
    assert lines[2] == "type True", lines
    assert lines[3] == "True", lines
    assert lines[4].startswith("AE module 'ringred' has no attribute 'nonexistent'"), lines


def test_exceptions_are_exported():
    import ringred
    from ringred import errors

    for name in ("InvalidArgumentError", "RingredMPIError", "MismatchError", "PeerError"):
        assert getattr(ringred, name) is getattr(errors, name), name
        assert name in ringred.__all__, name
    assert issubclass(ringred.InvalidArgumentError, ValueError)
    assert issubclass(ringred.RingredMPIError, ringred.RingredError)
    # every class of the code table is reachable from the package
    assert {c.__name__ for c in errors.BY_STATUS.values()} <= set(ringred.__all__)


def _scripts() -> dict[str, str]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]


@pytest.mark.parametrize("script", sorted(_scripts()))
def test_console_script_resolves_and_prints_help(script):
    target = _scripts()[script]
    module, attr = target.split(":")
    assert callable(getattr(importlib.import_module(module), attr)), target
    # what pip's generated wrapper does
    res = _python(f"import sys; from {module} import {attr}; sys.argv[0] = {script!r}; "
                  f"sys.exit({attr}(['--help']))")
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("usage:"), res.stdout


def test_bench_plot_without_matplotlib_fails_before_the_sweep():
    res = _python("import sys; sys.modules['matplotlib'] = None\n"
                  "from ringred.bench.__main__ import main\n"
                  "main(['--plot', 'never.png', '--max-bytes', '64', '--rounds', '1'])")
    assert res.returncode != 0
    assert "--plot needs matplotlib" in res.stderr, res.stderr
    assert "busbw" not in res.stdout, res.stdout  # no table: it stopped before the sweep


def test_torch_init_with_rank_list_outside_raises_value_error():
    pytest.importorskip("torch")
    run_mpi(2, "torch_rank_list", timeout=120)
