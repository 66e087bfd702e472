#!/usr/bin/env bash
# Set up everything, then run the default experiment: MiniLM + EMoE on SST-2 with
# IMDB/Yelp/Amazon OOD evaluation, from the local data root (EMOE_DATA_ROOT, default
# ../shared/data). Extra arguments are Hydra overrides, e.g. `moe=dense`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh minilm,report  # report: emoe-report on the results afterwards
. .venv/bin/activate
emoe-run experiment=quickstart "$@"
