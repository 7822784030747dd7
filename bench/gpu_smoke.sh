#!/usr/bin/env bash
# GPU smoke benchmark of the scale-out path (bench/gpu_smoke.py): ZeRO-3 + bf16 on the 8B/20B shapes
# over every visible GPU, then the full-depth 8B shape on one GPU with activation checkpointing.
# Writes bench/gpu_results.json. Without CUDA it prints "skipped: no CUDA" and exits 0.
#   bash bench/gpu_smoke.sh [--layers 4 --steps 5 ...]   (extra arguments go to every part)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 WANDB_MODE=disabled TOKENIZERS_PARALLELISM=false

if ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu_smoke: skipped: no CUDA"
    exit 0
fi
NGPU=$("$PY" -c "import torch; print(torch.cuda.device_count())")
echo "gpu_smoke: ${NGPU} GPU(s)"
"$PY" bench/gpu_smoke.py prepare "$@"
"$PY" -m torch.distributed.run --standalone --nproc_per_node "$NGPU" bench/gpu_smoke.py zero3 "$@"
"$PY" bench/gpu_smoke.py single "$@"
echo "gpu_smoke: results in bench/gpu_results.json"
