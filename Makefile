# Two commands set up a fresh machine (only Python needed):
#   make demo   synthetic data + every asset for every partition, recorded in $(DAGSTER_HOME)
#   make test   the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home

.PHONY: install instance demo materialize sample-tuva sample-desynpuf test test-slow lint dev benchmark clean

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

# Every asset on whatever PGX_RAW_FORMAT / PGX_RAW_ROOT / PGX_LAKE_ROOT point at.
materialize: install instance
	$(BIN)/pgx materialize

# The public sample extracts (README "Input formats"), each with its own lake and instance.
SAMPLES ?= $(CURDIR)/../shared/data
sample-tuva: install
	$(MAKE) materialize DAGSTER_HOME=$(CURDIR)/.dagster_home-tuva PGX_RAW_FORMAT=tuva \
		PGX_RAW_ROOT=$(SAMPLES)/tuva_demo PGX_LAKE_ROOT=$(CURDIR)/data/lake-tuva

sample-desynpuf: install
	$(MAKE) materialize DAGSTER_HOME=$(CURDIR)/.dagster_home-desynpuf PGX_RAW_FORMAT=desynpuf \
		PGX_MIN_YEAR=2008 PGX_MAX_YEAR=2010 PGX_LAKE_ROOT=$(CURDIR)/data/lake-desynpuf \
		PGX_RAW_ROOT=$(SAMPLES)/desynpuf_sample,$(SAMPLES)/desynpuf_schema_examples

test: install
	$(BIN)/python -m pytest -q

test-slow: install
	$(BIN)/python -m pytest -q -m slow

lint: install
	$(BIN)/ruff check pgx_dagster pgx_dagster_tests benchmarks
	$(BIN)/ruff format --check pgx_dagster pgx_dagster_tests benchmarks

# The webserver and `pgx daemon` (dagster-daemon with a 1 s loop instead of 30 s, see README), on
# http://$(HOST):$(PORT): `make dev PORT=3001` when 3000 is taken. The port is checked before anything starts.
HOST ?= 127.0.0.1
PORT ?= 3000
define PORT_CHECK
import os, socket, sys
try:
    socket.create_server(("$(HOST)", int("$(PORT)"))).close()
except (OSError, ValueError) as exc:
    why = os.strerror(exc.errno) if isinstance(exc, OSError) and exc.errno else "not a port number"
    free = socket.create_server(("$(HOST)", 0)).getsockname()[1]
    sys.exit(f"make dev: cannot listen on $(HOST):$(PORT) ({why}): another webserver? Stop it, or use another "
             f"port, e.g. make dev PORT={free}")
endef
export PORT_CHECK
dev: install instance
	@$(BIN)/python -c "$$PORT_CHECK"
	$(BIN)/pgx daemon -w workspace.yaml & daemon=$$!; trap 'kill $$daemon' EXIT INT TERM; \
		$(BIN)/dagster-webserver -w workspace.yaml -h $(HOST) -p $(PORT)

# The benchmark of README "Performance" (BENCH_MEMBERS persons at 1x; JSON in data/benchmark.json).
BENCH_MEMBERS ?= 425000
benchmark: install
	$(BIN)/python -m benchmarks.backfill --members $(BENCH_MEMBERS) --json data/benchmark.json

clean:
	rm -rf data/lake data/lake-tuva data/lake-desynpuf "$(DAGSTER_HOME)" .dagster_home-tuva .dagster_home-desynpuf
