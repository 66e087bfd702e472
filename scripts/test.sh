#!/usr/bin/env bash
# Set up everything, then run the test suite (extra arguments go to pytest).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh test
. .venv/bin/activate
export HF_HUB_OFFLINE=1 WANDB_MODE=disabled
python -m pytest "$@"
