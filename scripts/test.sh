#!/usr/bin/env bash
# Set up (idempotent) and run the test suite. Locally the slow tests (2-process runs, the real checkpoint) are left
# out; with CI=true, or `bash scripts/test.sh --all`, they run too. Other arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
export HF_HUB_OFFLINE=1
marker=(-m "not slow")
args=()
for a in "$@"; do
  if [ "$a" = "--all" ]; then marker=(); else args+=("$a"); fi
done
if [ "${CI:-}" = "true" ]; then marker=(); fi
ruff check hf_lrfind tests scripts examples
python -m pytest "${marker[@]}" "${args[@]}"
