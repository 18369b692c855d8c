# One virtual environment, made from pyproject.toml; every target depends on it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.installed-bench

.PHONY: install demo test bench reliability migrate workers clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first, from the pinned CPU build, so no dependency range can pull a CUDA one.
	$(BIN)/pip install --quiet "torch==2.13.0"
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

$(BENCH_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e ".[dev,bench]"
	touch $(BENCH_STAMP)

install: $(STAMP)

migrate: $(STAMP)
	$(BIN)/alembic upgrade head

demo: $(STAMP)
	$(BIN)/pfd demo

workers: $(STAMP) migrate
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/honcho start

# The import contracts (pyproject.toml) first: a broken layer fails before any test runs.
test: $(STAMP)
	$(BIN)/lint-imports --no-cache
	$(BIN)/pytest -q -p no:cacheprovider

bench: $(BENCH_STAMP)
	$(BIN)/python -m bench

# The fault tests, writing what they measure to bench/results/reliability.json.
reliability: $(STAMP)
	PFD_RELIABILITY_REPORT=bench/results/reliability.json $(BIN)/pytest -q -p no:cacheprovider tests/reliability

clean:
	rm -rf var .pytest_cache
