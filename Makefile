# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test coverage bench accuracy clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# pip byte-compiles the installed modules one file at a time (torch, JAX, transformers: ~70 s
# on the 2-core machine); compileall does it on every core (~39 s). Not compiling at all costs
# more: the tests' spawned processes (gloo ranks) and Inductor then compile torch's modules
# concurrently, each for itself. compileall exits 1 on the few files in installed packages
# written for a newer Python than the venv's (pip skips them too): not an install failure.
COMPILE_ALL = $(BIN)/python -m compileall -q -j 0 $$($(BIN)/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])") > /dev/null 2>&1 || true

# Stamp files so that a second `make test` does not reinstall; a change to the C kernels (or
# their build) reinstalls, which recompiles them.
KERNELS := setup.py $(wildcard src/logsumexp/_cpu/src/*.c src/logsumexp/_cpu/src/*.h)

$(VENV)/.demo-installed: pyproject.toml $(KERNELS) | $(BIN)/python
	$(BIN)/python -m pip install -q --no-compile -e ".[fast]"
	$(COMPILE_ALL)
	touch $@

$(VENV)/.test-installed: pyproject.toml $(KERNELS) | $(BIN)/python
	$(BIN)/python -m pip install -q --no-compile -e ".[test]"
	$(COMPILE_ALL)
	touch $@ $(VENV)/.demo-installed

demo: $(VENV)/.demo-installed
	$(BIN)/logsumexp demo

# The whole suite, in parallel (pytest-xdist: one worker per core; tests that share a
# module-scoped gloo group or Dask cluster run on one worker), the 15 slowest tests listed.
# HYPOTHESIS_PROFILE=dev|nightly for fewer/more examples; `pytest -m "not slow"` while editing
# (in one process: its ~3,700 short tests finish sooner than two workers each collecting the suite).
PYTEST_ARGS ?= -n auto --dist loadgroup --durations=15

test: $(VENV)/.test-installed
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# Line coverage of the package (src/logsumexp) over the whole suite, per file and in total
# (the data file is kept inside the venv, which git ignores).
coverage: $(VENV)/.test-installed
	$(BIN)/python -m pip install -q "pytest-cov>=5"
	COVERAGE_FILE=$(VENV)/.coverage $(BIN)/python -m pytest -q $(PYTEST_ARGS) --cov=logsumexp --cov-report=term

bench: $(VENV)/.test-installed
	$(BIN)/logsumexp bench

accuracy: $(VENV)/.test-installed
	$(BIN)/python benchmarks/accuracy.py

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
