"""pytest-xdist groups (``make test`` runs ``pytest -n 2 --dist loadgroup``).

The cases of one ``run_mpi_cases`` job (one mpiexec per module and rank count, cached in the
test process) must run in one worker, or every worker would launch the job again: their tests
get the group ``<module>-<n>``.  Every other test is scheduled on its own."""

from __future__ import annotations

import pytest

# test function -> the parameter that selects its job's rank count, or the rank count itself
# (None: one job for the whole function)
SHARED_JOBS: dict[str, str | int | None] = {
    "test_collectives.py::test_collectives": "n",
    "test_engine.py::test_engine": "n",
    "test_engine_device.py::test_engine_device": "n",
    "test_engine_device.py::test_engine_device_join": "n",
    "test_engine_device.py::test_engine_device_ordering": 2,
    "test_errors.py::test_errors": "n",
    "test_hierarchical.py::test_hierarchical": None,
}


def pytest_configure(config: pytest.Config) -> None:
    # registered by pytest-xdist when installed; the test suite also runs without it
    config.addinivalue_line("markers", "xdist_group(name): run in the same xdist worker")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        key = f"{item.path.name}::{item.originalname}"
        if key in SHARED_JOBS:
            param = SHARED_JOBS[key]
            n = item.callspec.params[param] if isinstance(param, str) else param or ""
            item.add_marker(pytest.mark.xdist_group(f"{item.path.stem}-{n}"))
