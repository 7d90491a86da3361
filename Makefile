# The two set-up commands of the README: `make run` and `make test`. Both create the
# virtualenv and install what they need on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: run test lint docs mixin bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)  ## the demo: SQLite store, simulated traffic, exporter on 127.0.0.1:9747
	$(BIN)/model-monitor demo

test: $(STAMP)  ## lint, generated references up to date, the whole test suite
	$(BIN)/ruff check exporter tests benchmarks dashboards
	$(BIN)/model-monitor docs --check
	$(BIN)/model-monitor mixin --check
	$(BIN)/python -m pytest -n 3 --dist worksteal  # 3 workers: the long suites mostly wait

lint: $(STAMP)
	$(BIN)/ruff check exporter tests benchmarks dashboards

docs: $(STAMP)  ## regenerate docs/metrics.md, docs/config.md and the README references
	$(BIN)/model-monitor docs

mixin: $(STAMP)  ## regenerate alert_rules/, dashboards/generated/ and deploy/kubernetes/base/ from mixin/
	$(BIN)/model-monitor mixin

bench: $(STAMP)  ## every benchmark (SQLite and PostgreSQL), then one table of the speed and accuracy targets
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) var
