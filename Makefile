# `make test` and (once the local stack exists) `make dev` are the two
# commands a fresh clone needs; both set up the virtual environment first.
VENV   ?= .venv
PY     := $(VENV)/bin/python
PYTHON ?=

.PHONY: venv dev test lint unit integration bench clean

$(VENV)/.installed: requirements.txt requirements-dev.txt bench/requirements.txt scripts/bootstrap scripts/find-python
	PYTHON="$(PYTHON)" VENV="$(VENV)" scripts/bootstrap

venv: $(VENV)/.installed

dev: venv
	$(PY) manage.py dev $(ARGS)

lint: venv
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

test: lint
	$(PY) -m pytest

unit: venv
	$(PY) -m pytest tests/unit

integration: venv
	$(PY) -m pytest tests/integration

bench: venv
	$(PY) -m pip install --quiet -r bench/requirements.txt
	$(PY) -m bench.imaging
	$(PY) -m bench.handler
	$(PY) -m bench.import_time
	$(PY) -m bench.listing
	$(PY) -m bench.local_stack

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
