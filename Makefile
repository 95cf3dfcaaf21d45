# Two commands do all the set-up on a fresh Debian machine:
#   make run   - install into .venv and run the exporter against this host (:9747)
#   make test  - as root: install the test bed (docker.io, promtool, podman, ...), lint,
#                type-check, test (not root: `sudo make test`; `make unit` needs no root)
VENV   ?= .venv
PYTHON ?= python3
BIN     = $(VENV)/bin
ARGS   ?=

.PHONY: run inspect test lint unit pictures as-root alerts rule-tests dashboards image dist

# The test bed installs packages and starts dockerd: say so before building anything.
as-root:
	@if [ "$$(id -u)" -ne 0 ]; then \
		echo "make: this target must run as root (it installs the test bed: packages, dockerd)." >&2; \
		echo "      As root: make $(MAKECMDGOALS). With sudo: sudo make $(MAKECMDGOALS)." >&2; \
		echo "      Without root: make unit runs the tests that need none." >&2; \
		exit 1; \
	fi

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

# pytest-xdist: the host group's tests (sharing the host's dockerd and kernel, see
# tests/conftest.py) run one after another on one worker, each isolated module's group and the
# rest beside them. Three workers on two cores: the isolated groups wait on dockerds, samples and
# Prometheus more than they compute. The slowest tests are listed at the end: where the time went.
TEST_WORKERS ?= 3
test: as-root
	$(MAKE) --no-print-directory $(BIN)/.installed
	scripts/testbed.sh
	$(MAKE) --no-print-directory lint
	$(BIN)/pytest -rfEs -n $(TEST_WORKERS) --dist loadgroup --durations=25

# The README's pictures: the dashboards drawn by Grafana's panel components in headless
# Chromium from a real Prometheus (docs/pictures.md), and the /topology page by the browser test.
pictures: as-root
	$(MAKE) --no-print-directory $(BIN)/.installed
	scripts/testbed.sh
	DHE_PICTURES_DIR=$(CURDIR)/docs/img DHE_PICTURES_AFTER=300 \
		$(BIN)/pytest -q --timeout=900 tests/integration/test_prometheus_e2e.py::test_every_panel_of_every_dashboard_draws_data \
		tests/integration/test_topology_browser.py

# The alert rules (deploy/prometheus/alerts.yml, the PrometheusRule) from mixin/alerts.py;
# SETTINGS=file.yml for your own (python -m mixin.alerts --list-settings names them).
SETTINGS ?=
alerts: $(BIN)/.installed
	$(BIN)/python -m mixin.alerts $(if $(SETTINGS),--settings $(SETTINGS))

# The Grafana dashboards (grafana/dashboards/*.json) from grafana/generate.py, with the same
# SETTINGS file as the alerts (python -m grafana.generate --list-settings names what it takes).
dashboards: $(BIN)/.installed
	$(BIN)/python -m grafana.generate $(if $(SETTINGS),--settings $(SETTINGS))

# Every alert's promtool scenarios (generated) and the hand-written cases.
rule-tests: $(BIN)/.installed
	rm -rf $(CURDIR)/.rule-tests
	$(BIN)/python -m mixin.alerts --check --tests-out $(CURDIR)/.rule-tests
	cd tests/rules && promtool test rules alerts.test.yml $(CURDIR)/.rule-tests/*.test.yml

# The release's pieces, labelled with the version (written once, in exporter/__init__.py), the
# commit and the source address (pyproject.toml's). BASE_IMAGE=dhe-test/debian:bookworm where no
# registry is reachable (scripts/base-image.sh makes it).
VERSION  = $(shell $(PYTHON) -c 'import exporter; print(exporter.__version__)')
REVISION = $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
SOURCE   = $(shell $(PYTHON) -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["urls"]["Source"])')
BASE_IMAGE ?=
image:
	docker build $(if $(BASE_IMAGE),--build-arg BASE_IMAGE=$(BASE_IMAGE)) \
		--build-arg VERSION=$(VERSION) --build-arg REVISION=$(REVISION) \
		--build-arg SOURCE=$(SOURCE) -t docker-host-exporter:$(VERSION) .

# sdist and wheel in dist/, checked as PyPI would check them.
dist: $(BIN)/.installed
	rm -rf dist
	$(BIN)/python -m build --sdist --wheel --outdir dist .
	$(BIN)/python -m twine check --strict dist/*
