#!/usr/bin/env bash
# A small but real grid on a laptop CPU: all-MiniLM-L6-v2 fine-tuned on 2,000 SST-2
# sentences (2 epochs, batch 16, lr 5e-5), evaluated on 500 SST-2 dev sentences and 500
# each of IMDB, Yelp and Amazon (OOD); dense vs EMoE vs EMoE-learn vs GMoE-style, 3 seeds
# = 12 runs. Then
# the emoe-report table. About 25-30 min on 2 idle cores (estimated; on a busy machine use
# OMP_NUM_THREADS=1, and pass smaller sizes as overrides). Re-running it skips the runs
# already completed (delete outputs/reproduce_cpu and outputs/index to start over).
#
#   bash scripts/reproduce_cpu.sh            # needs the project installed (scripts/test.sh)
#   OMP_NUM_THREADS=1 bash scripts/reproduce_cpu.sh data.max_train_samples=1000 \
#       trainer.epochs=1 trainer.lr=1e-4 data.max_eval_samples=200  # the README's smaller run
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
    data.max_train_samples=2000 data.max_eval_samples=500 trainer.epochs=2 trainer.batch_size=16 \
    "hydra.sweep.dir=$OUT/runs/\${now:%Y-%m-%d_%H-%M-%S}" "$@" || true
echo "grid wall time: $(( (SECONDS - started) / 60 )) min $(( (SECONDS - started) % 60 )) s"
"$BIN/emoe-report" "$OUT/runs" --out "$OUT/report"
