PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-dev
RUN_STAMP := $(VENV)/.installed-run
MODELS := examples/models

.PHONY: run test check bench examples format clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(RUN_STAMP): pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install --quiet -e ".[examples]"
	touch $@

$(STAMP): pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@ $(RUN_STAMP)

examples: $(RUN_STAMP)
	$(PY) examples/build_examples.py $(MODELS)

run: examples
	$(PY) -m modelserve serve $(MODELS) --host 127.0.0.1 --http-port 8000

test: $(STAMP)
	$(PY) -m pytest -n 2 -q

check: $(STAMP)
	$(VENV)/bin/ruff format --check src tests examples benchmarks
	$(VENV)/bin/ruff check src tests examples benchmarks
	$(VENV)/bin/mypy src
	$(VENV)/bin/lint-imports

format: $(STAMP)
	$(VENV)/bin/ruff format src tests examples benchmarks
	$(VENV)/bin/ruff check --fix src tests examples benchmarks

bench: $(STAMP)
	$(PY) benchmarks/run.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
