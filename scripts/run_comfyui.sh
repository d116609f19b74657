#!/usr/bin/env bash
# Start ComfyUI with this pack loaded (README command #1).
#
#   scripts/run_comfyui.sh [extra ComfyUI arguments...]
#
# Runs scripts/setup_env.sh (fast when nothing changed), then
#   .venv/bin/python .comfyui/ComfyUI/main.py --listen 127.0.0.1 --port ${PORT:-8188} [--cpu] "$@"
# --cpu is added when there is no nvidia-smi. RR_COMFYUI_DIR selects another ComfyUI tree.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup_env.sh"

COMFY_DIR="${RR_COMFYUI_DIR:-$ROOT/.comfyui/ComfyUI}"
ARGS=(--listen 127.0.0.1 --port "${PORT:-8188}")
if ! command -v nvidia-smi >/dev/null 2>&1; then
    echo "[run] no nvidia-smi: starting ComfyUI with --cpu"
    ARGS+=(--cpu)
fi
echo "[run] $ROOT/.venv/bin/python $COMFY_DIR/main.py ${ARGS[*]} $*"
exec "$ROOT/.venv/bin/python" "$COMFY_DIR/main.py" "${ARGS[@]}" "$@"
