# Every target sets up its own .venv at the repo root; nothing needs to be installed by hand.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	# The CPU build of torch first, pinned, so nothing later pulls a CUDA build.
	$(PY) -m pip install torch==2.13.0
	$(PY) -m pip install -e ".[deep,llm,distributed,dev]"
	touch $(STAMP)

$(VENV)/.bench: $(STAMP)
	$(PY) -m pip install -e ".[bench]"
	touch $(VENV)/.bench

demo: $(STAMP)
	$(PY) -m bellman.demo

test: $(STAMP)
	$(PY) -m pytest

bench: $(VENV)/.bench
	$(PY) benchmarks/tabular.py

clean:
	rm -rf $(VENV) out runs
