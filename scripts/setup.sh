#!/usr/bin/env bash
# Create .venv and install llada (editable) with its dev tools. Idempotent: reruns are instant
# unless pyproject.toml changed.
#
# torch: we install a fixed release first (TORCH_SPEC, default torch==2.13.0), then the package,
# whose `torch>=2.4` is then already satisfied. On Linux+PyPI that release is the CUDA build (GPU
# users get the usual wheel); where a local CPU wheel of it is on pip's path, pip takes that in
# seconds instead of downloading several GB. Bring your own torch: TORCH_SPEC=skip, or
# `pip install -e ".[dev]"` into any environment that already has torch.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
STAMP="$VENV/.llada-installed"
WANT="$(cat pyproject.toml | sha256sum | cut -c1-16) $TORCH_SPEC"

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" ]]; then
  exit 0
fi
[[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
if [[ "$TORCH_SPEC" != "skip" ]]; then
  "$VENV/bin/python" -m pip install --quiet "$TORCH_SPEC"
fi
"$VENV/bin/python" -m pip install --quiet -e ".[dev]"
echo "$WANT" > "$STAMP"
echo "llada installed in $VENV ($("$VENV/bin/python" -c 'import torch; print("torch", torch.__version__)'))"
