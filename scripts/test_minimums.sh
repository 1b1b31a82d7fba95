#!/usr/bin/env bash
# The fast suite in a second environment, .venv-min, with pyproject.toml's declared minimums pinned
# (.ci/minimums.txt; torch stays at TORCH_SPEC, default 2.13.0). Idempotent; other arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv-min CONSTRAINTS=.ci/minimums.txt bash scripts/setup.sh
. .venv-min/bin/activate
export HF_HUB_OFFLINE=1
python -m pytest -m "not slow" -p no:cacheprovider "$@"
