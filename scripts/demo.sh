#!/usr/bin/env bash
# Set up (idempotent) and run the main job on the embedded default: a tiny GPT-2-style model, random init, on the
# text sample that ships with the package, on CPU. Writes lr_find_output/lr_find.json and lr_find.png.
# Extra arguments go to the CLI, e.g. `bash scripts/demo.sh --num-steps 50`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
export HF_HUB_OFFLINE=1
hf-lrfind --output-dir lr_find_output "$@"
