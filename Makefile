# Parley's interface: README, CI and people all call these targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(CURDIR)/.venv
PYTHON ?= python3
UV_VERSION := 0.13.8
TOOLS := .local/tools
UV := $(TOOLS)/bin/uv
VENV := .venv
RUN := $(UV) run --frozen --no-sync
PYTEST := $(RUN) pytest
# the stores infra-up starts beside Kafka: both (default), ferretdb or postgres (scripts/infra.sh).
# The services, make run and make fault use PostgreSQL; make test needs both, because the store
# contract suite and the MongoDB adapters' own tests run on FerretDB (docs/storage.md)
STORE ?= both
export STORE
LOCAL_STORE_URLS_ferretdb := mongodb://127.0.0.1:27017/parley
LOCAL_STORE_URLS_postgres := postgresql://postgres@127.0.0.1:54329/parley
LOCAL_STORE_URLS_both := $(LOCAL_STORE_URLS_ferretdb),$(LOCAL_STORE_URLS_postgres)
# the stores the contract suite (tests/store) runs on: the local ones unless set
PARLEY_STORE_URLS ?= $(LOCAL_STORE_URLS_$(STORE))
export PARLEY_STORE_URLS
# the local Kafka's size: 1 node (default) or a cluster of 3 (replication factor 3, min ISR 2)
KAFKA_BROKERS ?= 1
export KAFKA_BROKERS

.PHONY: help setup browser-install test-browser infra-install infra-up infra-down infra-reset infra-status run demo test test-unit test-store fault soak \
        fuzz test-integration test-contract test-e2e lint fmt typecheck docs bench bench-quick clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

$(UV):
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python >= 3.11 is required"'
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.synced: $(UV) uv.lock pyproject.toml shared/*/pyproject.toml services/*/pyproject.toml
	$(UV) sync --frozen --all-packages --python $(PYTHON)
	@touch $@

setup: $(VENV)/.synced infra-install browser-install ## install Python deps (uv, PostgreSQL's wheel among them), Kafka jars, FerretDB and Chromium

browser-install: ## Debian's Chromium for the console's browser tests (apt-get, as root or with sudo; once)
	@scripts/browser.sh install

infra-install: $(VENV)/.synced
	@scripts/infra.sh install

infra-up: $(VENV)/.synced ## start Kafka (KAFKA_BROKERS=1|3), FerretDB and PostgreSQL as local processes (STORE=both|ferretdb|postgres), create topics
	@scripts/infra.sh up
	@PARLEY_KAFKA_BOOTSTRAP_SERVERS=$$(scripts/infra.sh bootstrap-servers) $(RUN) parley topics create \
		--replication-factor $(KAFKA_BROKERS) --wait 60 >/dev/null && echo "infra: topics ready"

infra-down: ## stop the local Kafka and stores (data kept)
	@scripts/infra.sh down

infra-reset: ## stop them and wipe their data
	@scripts/infra.sh reset

infra-status:
	@scripts/infra.sh status

run: setup infra-up ## start infrastructure and every service in the foreground (Ctrl-C stops)
	@$(RUN) python scripts/run_stack.py

demo: $(VENV)/.synced ## send sample signed webhooks to a running stack and print the events
	@$(RUN) python scripts/demo.py

# make test runs its tests in TEST_WORKERS processes (pytest-xdist): most of their time is spent
# waiting on the broker, the stores and the processes they start, and each test has a namespace,
# schema and database of its own. The tests marked serial (they stop the infrastructure, or time
# something under load) run after them, alone. TEST_WORKERS=1 runs everything in one process.
TEST_WORKERS ?= 3
TEST_TIERS := tests --ignore=tests/fault --ignore=tests/soak
test: setup infra-up ## run every test tier (unit, store contract, integration, e2e, browser)
ifeq ($(TEST_WORKERS),1)
	$(PYTEST) $(TEST_TIERS)
else
	$(PYTEST) $(TEST_TIERS) -m "not serial" -n $(TEST_WORKERS) --dist worksteal
	$(PYTEST) $(TEST_TIERS) -m serial
endif

# the fault suite runs on a three-node cluster (the cluster faults need it); switching sizes needs
# make infra-down first (infra.sh says so)
fault: KAFKA_BROKERS = 3
fault: setup infra-up ## the fault suite on three Kafka nodes: brokers, store, process and provider failures (docs/reliability.md)
	$(PYTEST) tests/fault -v

SOAK_SECONDS ?= 1800
soak: setup infra-up ## 30 min of webhooks and replies through every process; memory, lag, verdict (docs/reliability.md, docs/soak.png)
	PARLEY_SOAK_SECONDS=$(SOAK_SECONDS) $(PYTEST) tests/soak -v -p no:randomly -o timeout=$$(( $(SOAK_SECONDS) + 1200 ))

FUZZ_SECONDS ?= 300
FUZZ_DIR := .local/fuzz
fuzz: $(VENV)/.synced ## fuzz the webhook normalizers and signature checks (FUZZ_SECONDS=300; crashes in .local/fuzz/crashes)
	@mkdir -p $(FUZZ_DIR)/corpus $(FUZZ_DIR)/crashes
	$(RUN) python tests/fuzz/fuzz_normalizers.py -max_total_time=$(FUZZ_SECONDS) -timeout=10 \
		-dict=tests/fuzz/normalizers.dict -artifact_prefix=$(FUZZ_DIR)/crashes/ \
		$(FUZZ_DIR)/corpus tests/fuzz/corpus

test-unit: $(VENV)/.synced ## pure tests, no I/O (the parser and signature contract tests included)
	$(PYTEST) tests/unit tests/providers -m "not integration"

test-contract: $(VENV)/.synced ## each provider's client and sender against the sandbox, parser against fixtures (no broker, no store)
	$(PYTEST) tests/providers

test-store: setup infra-up ## the store contract suite on every store of PARLEY_STORE_URLS (default: the local ones)
	$(PYTEST) tests/store

test-integration: setup infra-up ## against the real broker and store
	$(PYTEST) tests/integration

test-e2e: setup infra-up ## services as processes
	$(PYTEST) tests/e2e

test-browser: setup infra-up ## the admin console in headless Chromium (docs/console.md)
	$(PYTEST) tests/browser

lint: $(VENV)/.synced ## ruff lint and format check
	$(RUN) ruff check .
	$(RUN) ruff format --check .

fmt: $(VENV)/.synced ## format and fix what ruff can
	$(RUN) ruff format .
	$(RUN) ruff check --fix .

typecheck: $(VENV)/.synced ## mypy strict on every package's src/
	$(RUN) mypy

docs: $(VENV)/.synced ## write AsyncAPI documents and JSON Schemas under docs/
	$(RUN) python scripts/gen_docs.py

.PHONY: chart-check
chart-check: ## helm lint, render the chart with each ci/ value set, validate the manifests offline
	@scripts/k8s-tools.sh chart-check

# the store-bound ones (inbox, routing, e2e, profiles) load the 50,000-conversation data set into
# PostgreSQL and FerretDB and run on both (docs/performance.md)
BENCH ?= ingest_http,inbox,routing,e2e,profiles
# BENCH_STORES=postgresql narrows the store-bound ones to one store while working on it
BENCH_STORES ?= postgresql,mongodb
bench: setup infra-up ## benchmarks on both stores, about an hour, needs the machine alone (not part of make test): bench/results/, docs/performance.md
	@scripts/bench-tools.sh install
	PARLEY_BENCH_STORES=$(BENCH_STORES) $(RUN) python -m bench --only $(BENCH)

BENCH_SCALE ?= 0.05
bench-quick: setup infra-up ## the same pipeline shrunk (BENCH_SCALE=0.05: data set, backlogs, durations) in minutes; figures meaningless, in bench/results/quick/
	@scripts/bench-tools.sh install
	PARLEY_BENCH_STORES=$(BENCH_STORES) PARLEY_BENCH_SCALE=$(BENCH_SCALE) $(RUN) python -m bench --only $(BENCH)

clean: ## remove the virtualenv and caches (keeps infra data)
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
