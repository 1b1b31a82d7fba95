#!/usr/bin/env bash
# The fast suite in a second environment, .venv-min, with pyproject.toml's declared minimums pinned
# (.ci/minimums.txt; torch stays at TORCH_SPEC, default 2.13.0). Idempotent; other arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv-min/bin/python ]; then
  "$PYTHON" -m venv .venv-min
fi
. .venv-min/bin/activate
python -m pip install -q --upgrade pip >/dev/null
if ! python -c "import torch" 2>/dev/null; then
  python -m pip install -q "${TORCH_SPEC:-torch==2.13.0}"
fi
python -m pip install -q -c .ci/minimums.txt -e ".[test]"
python -c "import torch, transformers, accelerate, datasets; print(f'minimums: torch {torch.__version__}, transformers {transformers.__version__}, accelerate {accelerate.__version__}, datasets {datasets.__version__}')"
export HF_HUB_OFFLINE=1
python -m pytest -m "not slow" -p no:cacheprovider "$@"
