# Two commands do all the set-up on a fresh Debian machine:
#   make run   - install into .venv and run the exporter against this host (:9747)
#   make test  - install the test bed (as root: docker.io, promtool, ...), lint, type-check, test
VENV   ?= .venv
PYTHON ?= python3
BIN     = $(VENV)/bin
ARGS   ?=

.PHONY: run inspect test lint unit pictures

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

run: $(BIN)/.installed
	$(BIN)/docker-host-exporter $(ARGS)

inspect: $(BIN)/.installed
	$(BIN)/docker-host-exporter inspect $(ARGS)

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Fast tier: recorded fixtures, no root, no engine.
unit: $(BIN)/.installed
	$(BIN)/pytest tests/unit -q

test: $(BIN)/.installed
	scripts/testbed.sh
	$(MAKE) --no-print-directory lint
	$(BIN)/pytest -rfEs

# The README's dashboard pictures, drawn from a real Prometheus by the end-to-end test.
pictures: $(BIN)/.installed
	scripts/testbed.sh
	DHE_PICTURES_DIR=$(CURDIR)/docs/img $(BIN)/pytest -q tests/integration/test_prometheus_e2e.py
