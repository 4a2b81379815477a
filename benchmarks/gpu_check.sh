#!/usr/bin/env bash
# GPU check for a lent CUDA machine, about 10 minutes in all (each step has its own timeout):
#   1. a Python with vllm: $PY if given, else .venv-gpu (made with --system-site-packages, so a
#      torch already installed is reused); when vllm is not importable it installs the `gpu`
#      extra (pip, from whatever index or PIP_FIND_LINKS wheel dir the machine has), or says why
#      it cannot and goes on with the hf-only figures;
#   2. the vLLM tests (tests/test_vllm.py, marker vllm) on the GPU;
#   3. samples/s of the vllm and hf backends on one model (benchmarks/backend_throughput.py);
#   4. training tokens/s (benchmarks/train_throughput.py).
#     bash benchmarks/gpu_check.sh            # from the repo root, or anywhere
#     PY=/opt/venv/bin/python bash benchmarks/gpu_check.sh
# Never needed by `make test`; prints figures, asserts nothing beyond the tests' own checks.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
T0=$(date +%s)
step() { echo; echo "== [$(( $(date +%s) - T0 ))s] $*"; }
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 DVC_NO_ANALYTICS=1 GX_ANALYTICS_ENABLED=false
export TOKENIZERS_PARALLELISM=false VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1

step "device"
if ! nvidia-smi -L; then
  echo "gpu_check: no CUDA device (nvidia-smi -L failed); this script is for a GPU machine"
  exit 2
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader

VENV=${GPU_VENV:-.venv-gpu}
if [ -z "${PY:-}" ]; then
  if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv --system-site-packages "$VENV" || { echo "gpu_check: cannot make $VENV"; exit 2; }
  fi
  PY=$VENV/bin/python
fi
step "python: $PY ($($PY --version 2>&1))"

HAVE_VLLM=1
if ! $PY -c "import vllm" 2>/dev/null; then
  step "vllm is not importable: installing the gpu extra (pip install -e '.[gpu]')"
  if timeout 360 $PY -m pip install -q -e '.[gpu]' pytest hypothesis pytest-timeout; then
    $PY -c "import vllm" 2>/dev/null || HAVE_VLLM=0
  else
    HAVE_VLLM=0
  fi
  if [ "$HAVE_VLLM" = 0 ]; then
    echo "gpu_check: vllm is still not importable and pip could not install '.[gpu]' here"
    echo "  (no package index or wheel dir reachable?). Set PIP_FIND_LINKS=<dir with the vllm"
    echo "  wheels> or PY=<a python that has vllm>; going on with the hf figures only."
  fi
fi
# the package's own deps (torch reused when present), for the hf side and the tests
$PY -c "import modc_data.sampling.hf, polars, peft, hypothesis, pytest" 2>/dev/null \
  || timeout 240 $PY -m pip install -q -e . pytest hypothesis pytest-timeout \
  || echo "gpu_check: could not install this package's dependencies"
$PY - <<'EOF'
import torch
print(f"torch {torch.__version__}, cuda {torch.version.cuda}, {torch.cuda.device_count()} GPU(s):",
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none visible to torch")
try:
    import vllm
    print(f"vllm {vllm.__version__}")
except ImportError:
    print("vllm: not importable")
EOF

if [ "$HAVE_VLLM" = 1 ]; then
  step "vLLM tests on the GPU (tests/test_vllm.py)"
  timeout 300 $PY -m pytest -q -m vllm tests/test_vllm.py -p no:cacheprovider -rs \
    || echo "gpu_check: vLLM tests failed or timed out (exit $?)"
fi

step "samples/s: vllm vs hf backend, one model, one GPU"
BACKENDS="hf"; [ "$HAVE_VLLM" = 1 ] && BACKENDS="hf vllm"
timeout 180 $PY benchmarks/backend_throughput.py --device cuda --dtype bfloat16 \
  --prompts 256 --n 64 --new-tokens 60 --batch-size 4096 --rounds 2 --backends $BACKENDS \
  || echo "gpu_check: sampling benchmark failed or timed out (exit $?)"

step "training tokens/s on one GPU"
timeout 120 $PY benchmarks/train_throughput.py --steps 20 --threads 8 --batch-size 64 \
  || echo "gpu_check: training benchmark failed or timed out (exit $?)"

step "done in $(( $(date +%s) - T0 ))s"
