#!/usr/bin/env bash
# A small but real grid on a laptop CPU: all-MiniLM-L6-v2 fine-tuned on 1,000 SST-2
# sentences (1 epoch, batch 16, lr 1e-4), evaluated on 200 SST-2 dev sentences and 200
# each of IMDB, Yelp and Amazon (OOD); dense vs EMoE vs EMoE-learn vs GMoE-style, 3 seeds
# = 12 runs, then the emoe-report table. Measured: 12 min 40 s on 2 idle cores (docs/evidence.md
# "CPU reproduction"). Overrides resize it; larger runs separate the methods better.
# Re-running it skips the runs already completed (delete outputs/reproduce_cpu and
# outputs/index to start over).
#
#   bash scripts/reproduce_cpu.sh            # needs the project installed (scripts/test.sh)
#   bash scripts/reproduce_cpu.sh data.max_train_samples=4000 trainer.epochs=2 \
#       data.max_eval_samples=500            # bigger (not timed: roughly 8x the training)
#   EMOE_DATA_ROOT=/data/glue bash scripts/reproduce_cpu.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}" WANDB_MODE="${WANDB_MODE:-disabled}"
BIN="${BIN:-.venv/bin}"
OUT="${OUT:-outputs/reproduce_cpu}"

started=$SECONDS
# seeds outermost: a grid stopped early still compares every method on the first seeds.
# Exit code 1 only means some run failed; the tally says which, and the report uses the rest.
"$BIN/emoe-run" --multirun experiment=quickstart logger=none \
    seed=0,1,2 method=dense,emoe,emoe_learn,gmoe \
    data.max_train_samples=1000 data.max_eval_samples=200 trainer.epochs=1 trainer.batch_size=16 \
    trainer.lr=1e-4 \
    "hydra.sweep.dir=$OUT/runs/\${now:%Y-%m-%d_%H-%M-%S}" "$@" || true
echo "grid wall time: $(( (SECONDS - started) / 60 )) min $(( (SECONDS - started) % 60 )) s"
"$BIN/emoe-report" "$OUT/runs" --out "$OUT/report"
