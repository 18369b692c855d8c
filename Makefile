# One virtual environment, made from pyproject.toml with every version pinned by
# constraints.txt (pip-compile; `make lock` refreshes it); every target depends on it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.installed-bench
CONSTRAINTS := constraints.txt
PIP_TOOLS := pip-tools==7.6.2

.PHONY: install lock demo test test-s3 bench reliability migrate workers browser promtool clean

$(STAMP): pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first, from the pinned CPU build, so no dependency range can pull a CUDA one.
	$(BIN)/pip install --quiet -c $(CONSTRAINTS) "torch==2.13.0"
	$(BIN)/pip install --quiet -c $(CONSTRAINTS) -e ".[dev,mlflow]"
	touch $(STAMP)

$(BENCH_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -c $(CONSTRAINTS) -e ".[dev,mlflow,bench]"
	touch $(BENCH_STAMP)

# Re-resolve constraints.txt from pyproject.toml (every extra): pins still allowed are kept,
# UPGRADE=1 moves every package to its newest allowed version. torch stays at pyproject's pin
# (the CPU build); a lock that would bring CUDA packages is refused.
lock: $(STAMP)
	$(BIN)/pip install --quiet "$(PIP_TOOLS)"
	$(BIN)/pip-compile --quiet --all-extras --strip-extras --no-emit-index-url --no-emit-find-links \
		--no-emit-trusted-host $(if $(UPGRADE),--upgrade) -o $(CONSTRAINTS) pyproject.toml
	! grep -iE '^(nvidia-|triton|cuda)' $(CONSTRAINTS)

install: $(STAMP)

migrate: $(STAMP)
	$(BIN)/alembic upgrade head

demo: $(STAMP)
	$(BIN)/pfd demo

workers: $(STAMP) migrate
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/honcho start

# Debian's chromium, which the dashboard's browser test drives through Playwright; installed
# only where it is missing, from the distribution (Playwright never downloads a browser here).
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	apt-get update && apt-get install -y chromium

browser: $(CHROMIUM)

# promtool (Debian's prometheus package) checks the alert rules in ops/prometheus.
PROMTOOL := /usr/bin/promtool
$(PROMTOOL):
	apt-get update && apt-get install -y --no-install-recommends prometheus

promtool: $(PROMTOOL)

# iproute2's ip, with which the cross-host tests (tests/across_hosts) build their hosts
# from network namespaces on a bridge.
IP := /usr/sbin/ip
$(IP):
	apt-get update && apt-get install -y --no-install-recommends iproute2

# The import contracts (pyproject.toml) first: a broken layer fails before any test runs.
# The 25 slowest tests are listed at the end: the suite must stay under 20 minutes here.
test: $(STAMP) $(CHROMIUM) $(PROMTOOL) $(IP)
	$(BIN)/lint-imports --no-cache
	$(BIN)/pytest -q -p no:cacheprovider --durations=25

# The suite with every artifact going through an object store (a SeaweedFS of the session's).
test-s3: $(STAMP) $(CHROMIUM) $(PROMTOOL) $(IP)
	PFD_TEST_ARTIFACT_STORE=s3 $(BIN)/pytest -q -p no:cacheprovider

bench: $(BENCH_STAMP)
	$(BIN)/python -m bench

# The fault tests, writing what they measure to bench/results/reliability.json.
reliability: $(STAMP)
	PFD_RELIABILITY_REPORT=bench/results/reliability.json $(BIN)/pytest -q -p no:cacheprovider tests/reliability

clean:
	rm -rf var .pytest_cache
