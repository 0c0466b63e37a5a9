# The two commands a fresh machine needs: `make run` and `make test`.
# Each creates .venv and installs what is missing first.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: install assets run test test-fast lint format demo clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "carehub needs Python 3.11 or newer"'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# GOV.UK Frontend's built assets for the portal, fetched from the npm registry (not vendored).
# Its GDS Transport font is licensed for GOV.UK services only, so the fonts are left out and the
# pages fall back to Arial, as the Design System advises for services off GOV.UK.
GOVUK_FRONTEND := 6.3.0
ASSETS := services/portal/static/govuk/.version-$(GOVUK_FRONTEND)

$(ASSETS):
	@command -v npm >/dev/null || { echo "npm is needed to fetch GOV.UK Frontend"; exit 1; }
	rm -rf services/portal/static/govuk && mkdir -p services/portal/static/govuk
	cd services/portal/static/govuk && npm pack --silent govuk-frontend@$(GOVUK_FRONTEND) >/dev/null \
		&& tar -xzf govuk-frontend-$(GOVUK_FRONTEND).tgz --strip-components=3 \
			package/dist/govuk/govuk-frontend.min.css package/dist/govuk/assets/images \
			package/dist/govuk/assets/manifest.json \
		&& rm -f govuk-frontend-$(GOVUK_FRONTEND).tgz
	@touch $@

assets: $(ASSETS)

install: $(STAMP) $(ASSETS)

## Run the whole service on embedded defaults (tansu broker, SQLite, outbox files) with demo data.
run: $(STAMP) $(ASSETS)
	$(VENV)/bin/carehub run --demo-data

## Lint, type-check, then run the whole test suite (needs PostgreSQL on 127.0.0.1:5432;
## .ci/run starts it). The browser tests drive Debian's Chromium by its path: installed here
## only where it is missing (as root, or with sudo), never Playwright's own download.
test: $(STAMP) $(ASSETS)
	@test -x /usr/bin/chromium || { \
		SUDO=$$(test "$$(id -u)" -eq 0 || echo sudo); \
		$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium \
		|| { $$SUDO apt-get update && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; }; }
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

## Known vulnerabilities in the installed packages (pip-audit against PyPI's advisory data),
## less the reviewed exceptions in .ci/pip-audit-ignore.txt (one ID a line, with its reason).
## Exits non-zero on an advisory, and when a package could not be checked ("not checked" is not
## "clean"); gives up after 120 s so CI never hangs on the network.
.PHONY: audit
audit: $(STAMP)
	@ignores=$$(sed -e 's/#.*//' .ci/pip-audit-ignore.txt | awk 'NF {printf " --ignore-vuln %s", $$1}'); \
	out=$$(mktemp); \
	timeout 120 $(VENV)/bin/pip-audit --skip-editable --progress-spinner off $$ignores >$$out 2>&1; \
	status=$$?; \
	cat $$out; \
	unchecked=$$(grep -c "could not be audited" $$out); \
	rm -f $$out; \
	if [ $$status -eq 124 ]; then echo "make audit: pip-audit timed out after 120 s" >&2; \
	elif [ $$status -eq 0 ] && [ $$unchecked -gt 0 ]; then \
		echo "make audit: $$unchecked packages could not be checked (listed above)" >&2; status=1; \
	fi; \
	exit $$status

format: $(STAMP)
	$(VENV)/bin/ruff format services tests
	$(VENV)/bin/ruff check --fix services tests

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
