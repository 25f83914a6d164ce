# Two commands do all set-up: `make run` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install run test test-fast bench lint fmt clean browser postgres loadtest

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The product beside a sandbox EHR with the synthetic patients, all on 127.0.0.1; Ctrl-C stops.
# Other ports: make run PORT=9080 EHR_PORT=9081
PORT     ?= 8080
EHR_PORT ?= 8081
run: install
	$(BIN)/anastrozole-cds demo --port $(PORT) --ehr-port $(EHR_PORT)

# Headless Chromium for the browser tests (tests/smartapp), from Debian's package: a fresh CI
# machine has none. Never `playwright install`: it downloads a browser from the internet.
CHROMIUM := /usr/bin/chromium
SUDO     := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

browser:
	@test -x $(CHROMIUM) || { \
		echo "installing chromium with apt-get for the browser tests"; \
		$(SUDO) apt-get update && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; }

# PostgreSQL for the store's tests (the same code as SQLite): Debian's package when missing.
postgres:
	@command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
		echo "installing postgresql with apt-get for the store tests"; \
		$(SUDO) apt-get update && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql; }

test: install browser postgres
	$(BIN)/python -m pytest

test-fast: install
	$(BIN)/python -m pytest -m 'not integration'

bench: install
	$(BIN)/python -m pytest benchmarks --benchmark-only --benchmark-columns=min,median,mean,max,rounds --benchmark-sort=name

# Bounded load test of `anastrozole-cds serve` on 127.0.0.1 (wrk, from Debian: apt-get install -y wrk)
loadtest: install
	$(BIN)/python loadtest/run.py --workers 2 --threads 1 --duration 10 --connections 4

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

fmt: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .benchmarks build *.egg-info
