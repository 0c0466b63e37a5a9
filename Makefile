# The two commands a fresh machine needs: `make run` and `make test`.
# Each creates .venv and installs what is missing first.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: install run test test-fast lint format demo clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "carehub needs Python 3.11 or newer"'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

## Run the whole service on embedded defaults (tansu broker, SQLite, outbox files) with demo data.
run: $(STAMP)
	$(VENV)/bin/carehub run --demo-data

## Lint, type-check, then run the whole test suite (needs PostgreSQL on 127.0.0.1:5432;
## .ci/run starts it).
test: $(STAMP)
	$(VENV)/bin/ruff check services tests
	$(VENV)/bin/mypy
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q tests/unit

demo: $(STAMP)
	$(VENV)/bin/carehub demo

lint: $(STAMP)
	$(VENV)/bin/ruff check services tests
	$(VENV)/bin/ruff format --check services tests
	$(VENV)/bin/mypy

format: $(STAMP)
	$(VENV)/bin/ruff format services tests
	$(VENV)/bin/ruff check --fix services tests

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
