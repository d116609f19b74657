#!/usr/bin/env bash
# Start ComfyUI with this pack loaded (README command #1).
#
#   scripts/run_comfyui.sh [extra ComfyUI arguments...]
#
# Runs scripts/setup_env.sh (fast when nothing changed), then
#   .venv/bin/python .comfyui/ComfyUI/main.py [--listen 127.0.0.1] [--port ${PORT:-8188}] [--cpu] "$@"
# --listen/--port are added only when not given; --cpu when there is no nvidia-smi. RR_COMFYUI_DIR selects
# another ComfyUI tree.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup_env.sh"

COMFY_DIR="${RR_COMFYUI_DIR:-$ROOT/.comfyui/ComfyUI}"
ARGS=()
given() { local a; for a in "${@:2}"; do [[ "$a" == "$1" || "$a" == "$1="* ]] && return 0; done; return 1; }
given --listen "$@" || ARGS+=(--listen 127.0.0.1)
given --port "$@" || ARGS+=(--port "${PORT:-8188}")
if ! command -v nvidia-smi >/dev/null 2>&1 && ! given --cpu "$@"; then
    echo "[run] no nvidia-smi: starting ComfyUI with --cpu"
    ARGS+=(--cpu)
fi
cat <<'NOTE'
[run] Harmless lines ComfyUI 0.3.75 prints here, once each:
[run]   "IMPORT FAILED: nodes_audio.py" (and a torchaudio traceback): ComfyUI's audio nodes need torchaudio,
[run]     which has no build for this torch; this pack needs no audio node.
[run]   "comfyui-workflow-templates is not installed" (an ERROR banner): ComfyUI's own example templates;
[run]     this pack's workflows are under Templates -> ComfyUI-RationalRewards all the same.
NOTE
echo "[run] $ROOT/.venv/bin/python $COMFY_DIR/main.py ${ARGS[*]} $*"
exec "$ROOT/.venv/bin/python" "$COMFY_DIR/main.py" "${ARGS[@]}" "$@"
