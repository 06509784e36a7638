# Learnright: `make demo` runs the main job, `make test` runs the whole suite.
# Both set up everything themselves: the virtualenv, the packages, the Kafka jars.
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
NATIVE_STAMP := $(VENV)/.native-stamp
# rustup installs cargo here; a non-login shell (CI) may not have it on PATH yet.
export PATH := $(HOME)/.cargo/bin:$(PATH)

.PHONY: help lock setup kafka-jars postgres browser demo test test-unit test-chaos schema-check lint-imports bench bench-compare bench-scale clean

help: ## List every target with one line each
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

setup: $(STAMP) $(NATIVE_STAMP) ## Make .venv (Python >= 3.11), install Learnright with its dev tools, build native/

# Versions are locked: every install (build backends too) is constrained by requirements.lock.
export PIP_CONSTRAINT := $(CURDIR)/requirements.lock

$(STAMP): pyproject.toml requirements.lock
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Learnright needs Python >= 3.11; set PYTHON=python3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

lock: ## Re-pin requirements.lock from what .venv has installed (after changing pyproject.toml)
	@{ sed -n '1,2p' requirements.lock; $(BIN)/pip freeze --exclude-editable | grep -vi '^learnright'; \
	   grep -E '^(maturin|pip|setuptools)==' requirements.lock; } > requirements.lock.new && mv requirements.lock.new requirements.lock

$(NATIVE_STAMP): $(STAMP) native/Cargo.toml native/Cargo.lock native/pyproject.toml $(wildcard native/src/*.rs)
	@command -v cargo >/dev/null || { echo "make setup: building native/ needs Rust's cargo (https://rustup.rs, or Debian's cargo)" >&2; exit 1; }
	$(BIN)/pip install --quiet ./native
	@touch $@

kafka-jars: setup ## Resolve the pinned Kafka broker jars with Maven (cached in ~/.cache/learnright)
	$(BIN)/python -c 'from ground.settings import Settings; from learnright.broker import ensure_jars; s = Settings(); print(ensure_jars(s.broker.kafka_version, s.broker.cache_dir))'

# Debian's postgresql-<major> puts initdb, pg_ctl and psql in /usr/lib/postgresql/<major>/bin (learnright/postgres.py).
postgres: ## Install Debian's postgresql for `learnright postgres up` and its tests (apt-get, as root) unless a server is there
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { $(call APT_INSTALL,postgresql); }

demo: setup kafka-jars ## Run the main job end to end on a real broker; statements land in var/demo/statements
	$(BIN)/learnright demo

browser: ## Install Debian's chromium for the holder page tests with apt-get (root or sudo) unless it is there; SKIP_BROWSER=1: nothing
	@if [ -n "$(SKIP_BROWSER)" ]; then echo "make browser: SKIP_BROWSER is set: chromium is not installed and the browser tests skip"; \
	elif ! command -v chromium >/dev/null; then \
	  echo "make browser: installing Debian's chromium with apt-get for the holder page tests (root or sudo; make test SKIP_BROWSER=1 runs everything else)"; \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium; \
	  elif command -v sudo >/dev/null; then sudo apt-get update -qq && sudo apt-get install -y -qq chromium; \
	  else echo "make browser: install chromium (apt-get install -y chromium), or run make test SKIP_BROWSER=1" >&2; exit 1; fi; fi

# The suite runs in TEST_WORKERS processes (pytest-xdist), a test file each at a time, each process
# with its own broker and PostgreSQL: most tests wait on brokers, servers and children, so two
# processes keep two cores busy. TEST_WORKERS=0 runs it in one process.
TEST_WORKERS ?= 2
test: browser setup kafka-jars postgres schema-check lint-imports deploy-tools ## Run the whole suite against real Kafka brokers (TEST_WORKERS processes); first installs chromium with apt (root or sudo) unless SKIP_BROWSER=1
	SKIP_BROWSER='$(SKIP_BROWSER)' $(BIN)/pytest -q -n $(TEST_WORKERS) --dist loadfile

# Tools of the deploy/ tests (tests/deploy): promtool and Prometheus, docker compose, kubeconform.
.PHONY: prometheus compose kubeconform deploy-tools
TOOLS := $(HOME)/.cache/learnright
KUBECONFORM_VERSION := v0.6.7
K8S_VERSION := v1.33.5
K8S_SCHEMAS := $(TOOLS)/kubernetes-json-schema/$(K8S_VERSION)-standalone-strict
GO ?= $(shell command -v go || echo /usr/local/go/bin/go)
APT_INSTALL = if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq $(1); \
	  elif command -v sudo >/dev/null; then sudo apt-get update -qq && sudo apt-get install -y -qq $(1); \
	  else echo "make: install $(1) (apt-get install -y $(1))" >&2; exit 1; fi

deploy-tools: prometheus compose kubeconform ## Install what the deploy/ tests need: promtool, docker compose, kubeconform

prometheus: ## Install Debian's prometheus (promtool, the server) for the alert tests (apt-get, as root) unless it is there
	@command -v promtool >/dev/null && command -v prometheus >/dev/null || { $(call APT_INSTALL,prometheus); }

compose: ## Install Debian's docker-compose for `compose config` unless `docker compose` or docker-compose is there
	@docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null || { $(call APT_INSTALL,docker-compose); }

kubeconform: ## Install kubeconform (pinned, Go proxy) and the Kubernetes JSON schemas (from k8s.io/kubernetes' OpenAPI)
	@test -x $(TOOLS)/bin/kubeconform || GOBIN=$(TOOLS)/bin $(GO) install github.com/yannh/kubeconform/cmd/kubeconform@$(KUBECONFORM_VERSION)
	@test -f $(K8S_SCHEMAS)/statefulset-apps-v1.json || { \
	  dir=$$(cd /tmp && $(GO) mod download -json k8s.io/kubernetes@$(K8S_VERSION) | $(PYTHON) -c 'import json, sys; print(json.load(sys.stdin)["Dir"])') && \
	  $(PYTHON) deploy/k8s/json_schemas.py $$dir/api/openapi-spec/swagger.json $(K8S_SCHEMAS); }

schema-check: setup ## Fail unless every schema version is backward and forward compatible with every earlier one
	$(BIN)/python -m schemas.compatibility schemas

lint-imports: setup ## Fail unless imports follow the layers in pyproject.toml [tool.importlinter]
	$(BIN)/lint-imports --no-logo

bench: setup kafka-jars ## Measure ingestion against raw Kafka consumption (1M events); writes docs/benchmarks.md
	$(BIN)/learnright bench

REV ?= HEAD~1
bench-compare: setup kafka-jars ## Ingest side by side against git revision REV (default HEAD~1); adds a row to docs/benchmarks.md
	$(BIN)/learnright bench --against '$(REV)'

bench-scale: setup kafka-jars postgres ## Ingest into a file, a lake with 1 writer and with 2, side by side; writes docs/scaling.md
	$(BIN)/learnright bench-scale

test-chaos: setup kafka-jars postgres ## The chaos tests at full size: 200,000 events with 3 brokers and 3 writers; SIGKILL at 60 points
	LEARNRIGHT_CHAOS_EVENTS=200000 LEARNRIGHT_SIGKILL_ROUNDS=60 $(BIN)/pytest -q tests/consumers/test_chaos.py \
	  tests/consumers/test_exactly_once.py::test_sigkill_at_random_points_then_restart_loses_and_doubles_nothing

test-unit: setup ## Run only the tests that need no broker and no PostgreSQL
	$(BIN)/pytest -q -m 'not broker and not postgres'

clean: ## Remove the virtualenv and local ledger, broker and demo state
	rm -rf $(VENV) var .pytest_cache .hypothesis .import_linter_cache *.egg-info native/target
