# Fenliu — the two commands a newcomer needs are `make dev` and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup compile dev test tools lint typecheck unit bench clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,lab,test,compiled]'
	$(BIN)/python -m daemon.tools.compile || test "$$CI" != true
	touch $(STAMP)

setup: $(STAMP)

## Compile the routing core again after changing it (it runs as plain Python until then).
compile: $(STAMP)
	$(BIN)/python -m daemon.tools.compile

## Set up and run the local demo.
dev: $(STAMP)
	$(BIN)/fenliu dev

## Set up and run everything CI runs: ruff, mypy, the whole pytest suite.
test: $(STAMP) tools lint typecheck
	$(BIN)/python -m pytest

## Programs the tests drive that pip does not bring: promtool (Debian's prometheus package)
## for deploy/prometheus. Installed when missing and root; otherwise its tests skip (and
## fail under CI=true).
APT_INSTALL := apt-get install -y --no-install-recommends
tools:
	@command -v promtool >/dev/null || { [ "$$(id -u)" = 0 ] \
		&& { $(APT_INSTALL) prometheus || { apt-get update && $(APT_INSTALL) prometheus; }; }; } \
		|| echo "promtool is missing and not installed (not root): its tests will skip"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/hadolint Dockerfile

typecheck: $(STAMP)
	$(BIN)/mypy daemon topics

bench: $(STAMP)
	$(BIN)/python bench/core.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache daemon/core/*.so daemon/core/compiled.json
