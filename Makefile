# Fenliu — the two commands a newcomer needs are `make dev` and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NPM_STAMP := tests/npm/node_modules/.package-lock.json

.PHONY: setup compile uncompile dev test check tools lint typecheck bench clean npm

## pytest-xdist workers for `make test`: most of the suite waits on brokers, daemons and
## Redis rather than computing, so more workers than cores pays (each has its own broker and
## Redis; docs/development.md, "Tests").
WORKERS ?= 6

## Under CI=true, setup compiles the routing core, so the suite runs what the image runs.
$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,lab,test,compiled]'
	test "$$CI" != true || $(BIN)/python -m daemon.tools.compile
	touch $(STAMP)

setup: $(STAMP)

## Compile the routing core with mypyc (a checkout runs it as plain Python until then); again
## after changing it, for the suite refuses a build older than its source. `make uncompile`
## goes back to plain Python (docs/architecture.md, The compiled core).
CORE_BUILD := daemon/core/compiled.json
compile: $(CORE_BUILD)
$(CORE_BUILD): $(wildcard daemon/core/*.py) | $(STAMP)
	$(BIN)/python -m daemon.tools.compile

uncompile: $(STAMP)
	$(BIN)/python -m daemon.tools.compile --clean

## Set up and run the local demo.
dev: $(STAMP)
	$(BIN)/fenliu dev

## Set up and run everything CI runs: ruff, mypy, the whole pytest suite.
test: $(STAMP) $(NPM_STAMP) tools lint typecheck
	$(BIN)/python -m pytest -n $(WORKERS) --dist loadscope --no-loadscope-reorder

## The everyday check: ruff, mypy and the pure tier (tests/core, no process started).
check: $(STAMP) $(NPM_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy daemon topics
	$(BIN)/python -m pytest -n 2 tests/core

## The npm packages the tests use (tests/npm/package-lock.json): the AsyncAPI specification's
## JSON Schemas. Without npm the AsyncAPI validity test is skipped; under CI=true it fails.
$(NPM_STAMP): tests/npm/package-lock.json
	npm ci --prefix tests/npm --ignore-scripts --no-audit --no-fund || test "$$CI" != true

npm: $(NPM_STAMP)

## Programs the tests drive that pip does not bring: promtool (Debian's prometheus package)
## for deploy/prometheus, and chromium for the console (Playwright drives it, no browser
## download). Installed when missing and root; otherwise their tests skip (and fail under
## CI=true).
APT_INSTALL := apt-get install -y --no-install-recommends
tools:
	@command -v promtool >/dev/null || { [ "$$(id -u)" = 0 ] \
		&& { $(APT_INSTALL) prometheus || { apt-get update && $(APT_INSTALL) prometheus; }; }; } \
		|| echo "promtool is missing and not installed (not root): its tests will skip"
	@test -x /usr/bin/chromium || { [ "$$(id -u)" = 0 ] \
		&& { $(APT_INSTALL) chromium || { apt-get update && $(APT_INSTALL) chromium; }; }; } \
		|| echo "chromium is missing and not installed (not root): the console's tests will skip"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/hadolint Dockerfile

typecheck: $(STAMP)
	$(BIN)/mypy daemon topics

bench: $(STAMP)
	$(BIN)/python bench/core.py

clean:
	rm -rf $(VENV) tests/npm/node_modules .mypy_cache .pytest_cache .ruff_cache daemon/core/*.so daemon/core/compiled.json
