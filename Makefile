# polewatch: setup, demo, test, bench, lint. Each target sets up what it needs by itself.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PY_STAMP := $(VENV)/.installed
DEB_STAMP := build/.debian-deps

.PHONY: setup demo demo-once test bench bench-fleet lint typecheck clean models

setup: $(PY_STAMP) $(DEB_STAMP)

# The virtual environment with polewatch (editable) and the test tools.
$(PY_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# Debian packages the tests use (Chromium for the console's browser tests).
$(DEB_STAMP): scripts/install-debian-deps.sh
	bash scripts/install-debian-deps.sh
	mkdir -p build && touch $@

# Receiver + console + a simulated unit playing the car-fire scenario; Ctrl-C stops.
demo: $(PY_STAMP)
	$(BIN)/polewatch demo

# The same scenario headless at full speed; exits 0 only when its expected outcome holds.
demo-once: $(PY_STAMP)
	$(BIN)/polewatch demo --once

test: setup
	$(BIN)/python -m pytest

# Speed and size figures: build/bench/results.json and a table.
bench: $(PY_STAMP)
	$(BIN)/python -m polewatch.bench

# A fleet of light units (uplink only) against two receivers on a throwaway PostgreSQL, with a
# console session watching:
# ingest rate, ack latency, lost/duplicated messages, page load; into the same results file.
FLEET_UNITS ?= 1000
FLEET_DURATION ?= 300
FLEET_RECEIVERS ?= 2
bench-fleet: setup
	$(BIN)/python -m polewatch.bench_fleet --units $(FLEET_UNITS) --duration $(FLEET_DURATION) \
		--receivers $(FLEET_RECEIVERS)

# The thermal object detector: simulate data, train, int8-quantise, evaluate, write the card
# (models/README.md). Needs the optional `train` extra (TensorFlow), which this installs.
models: $(PY_STAMP)
	$(BIN)/pip install --quiet -e '.[dev,train]'
	$(BIN)/python -m models.thermal.pipeline

lint: $(PY_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

typecheck: lint

clean:
	rm -rf build var .pytest_cache .mypy_cache .ruff_cache
