# Two commands set up a fresh machine (only Python needed):
#   make demo   synthetic data + every asset for every partition, recorded in $(DAGSTER_HOME)
#   make test   the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home

.PHONY: install instance demo test test-slow lint dev clean

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

install: $(BIN)/.installed

# The repo's dagster.yaml is the instance configuration; copy it into DAGSTER_HOME.
instance:
	mkdir -p "$(DAGSTER_HOME)"
	cp dagster.yaml "$(DAGSTER_HOME)/dagster.yaml"

demo: install instance
	$(BIN)/pgx demo

test: install
	$(BIN)/python -m pytest -q

test-slow: install
	$(BIN)/python -m pytest -q -m slow

lint: install
	$(BIN)/ruff check pgx_dagster pgx_dagster_tests
	$(BIN)/ruff format --check pgx_dagster pgx_dagster_tests

dev: install instance
	$(BIN)/dagster dev -w workspace.yaml

clean:
	rm -rf data/lake "$(DAGSTER_HOME)"
