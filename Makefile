# Two commands on a fresh machine: `make demo` and `make test`. Each creates .venv and installs what it needs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
# The CPU build of torch goes in first, so that nothing pulls a multi-GB CUDA build.
TORCH_PIN := torch==2.13.0

.PHONY: demo test lint bench clean

$(VENV)/.base: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q $(TORCH_PIN)
	$(PIP) install -q -e .
	touch $@

$(VENV)/.test: $(VENV)/.base pyproject.toml
	$(PIP) install -q -e '.[test]'
	touch $@

demo: $(VENV)/.base
	$(PY) -m yolokit demo out=demo_out

# pytest, then the lint contracts (ruff and the import-linter layers), so CI keeps the imports one-way.
test: $(VENV)/.test
	$(PY) -m pytest -q
	$(MAKE) lint

lint: $(VENV)/.test
	$(PY) -m ruff check src tests benchmarks
	$(VENV)/bin/lint-imports --no-cache

bench: $(VENV)/.base
	$(PY) benchmarks/import_time.py
	$(PY) benchmarks/predict.py

clean:
	rm -rf $(VENV) runs demo_out .pytest_cache
