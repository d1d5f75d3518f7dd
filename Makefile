VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

export HF_HUB_OFFLINE := 1

.PHONY: test demo lint typecheck unit bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench

typecheck: $(STAMP)
	$(VENV)/bin/mypy

# The whole suite, nothing skipped: scripts/test-deps.sh installs the browser, curl and
# PostgreSQL where they are missing (or says what to run), starts PostgreSQL and prints its URL.
PYTEST := url="$$(scripts/test-deps.sh)" && VRAMSCRIBE_TEST_PG_URL="$$url" $(PY) -m pytest -q

test: lint typecheck
	$(PYTEST) tests

unit: $(STAMP)
	$(PYTEST) tests/unit

demo: $(STAMP)
	$(PY) -m vramscribe.demo

bench: $(STAMP)
	$(PY) bench/policies.py
	$(PY) bench/core_speed.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
