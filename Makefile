# Every target sets itself up: a fresh clone needs only `make demo` or `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow test-all lint format bench gpu-check install install-extras install-interop test-interop clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# Every optional extra, resolved together: the PyTorch, JAX and TensorFlow bridges (docs/interop.md), Ray and
# CMA-ES (docs/scale.md), MuJoCo (docs/robots.md). Their tests skip without them; CI installs them.
EXTRAS_STAMP := $(VENV)/.installed-extras
$(EXTRAS_STAMP): $(STAMP) pyproject.toml
	$(BIN)/python -m pip install -q -e '.[test,torch,jax,tf,scale,robots]'
	touch $(EXTRAS_STAMP)

install-extras: $(EXTRAS_STAMP)
install-interop: install-extras

test-interop: $(EXTRAS_STAMP)
	DIFFSIM_REQUIRE_INTEROP=1 $(PYTEST) tests/interop

demo: $(STAMP)
	$(BIN)/diffsim demo --force

# Tests run in one process per core (pytest-xdist), a test file per process: most of their time is Taichi compiling
# kernels, one thread each. JOBS=0 runs them in this process.
JOBS ?= auto
PYTEST := $(BIN)/python -m pytest -q -n $(JOBS) --dist loadfile

# `make test`: everything but the tests marked slow (under 10 minutes on 2 cores). CI also runs `make test-slow`.
# The framework bridges' tests run in processes of their own: TensorFlow and Taichi's Vulkan renderer (GGUI) in one
# process abort (docs/interop.md).
test: $(STAMP)
	$(PYTEST) -m "not slow" --ignore=tests/interop tests
	$(PYTEST) -m "not slow" tests/interop || [ $$? -eq 5 ]

test-slow: $(STAMP)
	$(PYTEST) -m slow --ignore=tests/interop tests || [ $$? -eq 5 ]  # 5: none selected
	$(PYTEST) -m slow tests/interop || [ $$? -eq 5 ]

# Lint and formatting (ruff, pinned in the test extra); CI runs `make lint`.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .

test-all: $(STAMP)
	$(PYTEST) --ignore=tests/interop tests
	$(PYTEST) tests/interop

bench: $(STAMP)
	$(BIN)/diffsim bench

gpu-check:
	bash benchmarks/gpu_check.sh

clean:
	rm -rf $(VENV) runs
