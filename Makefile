# `make test` and `make demo` each create or refresh their virtual environment (.venv) first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch is pinned in the same pip command so pip takes the CPU build instead of CUDA packages.
INSTALL := -e ".[jax,torch,export,fast-eval,keras-cv,dev]" "torch==2.13.0"
BACKENDS ?= tensorflow jax torch
PYTEST_ARGS ?=

.PHONY: test demo venv clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(INSTALL)
	touch $@

venv: $(VENV)/.installed

test: venv
	@set -e; for backend in $(BACKENDS); do \
		echo "=== pytest, KERAS_BACKEND=$$backend ==="; \
		KERAS_BACKEND=$$backend $(PY) -m pytest -q $(PYTEST_ARGS); \
	done

demo: venv
	KERAS_BACKEND=tensorflow $(PY) examples/demo.py --output demo_output

clean:
	rm -rf $(VENV) demo_output runs
