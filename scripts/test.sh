#!/usr/bin/env bash
# The project's test command (README, CI): set up if needed, lint, then the whole suite offline.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 WANDB_MODE=offline
export TOKENIZERS_PARALLELISM=false
.venv/bin/ruff check .
.venv/bin/ruff format --check .
# pytest exits 5 when it collects nothing: that fails here too (set -e), as it should.
.venv/bin/python -m pytest "$@"
