#!/usr/bin/env bash
# A second test environment with the LOWEST supported dependencies, installed the way ComfyUI-Manager
# installs the pack: requirements.txt only (no `pip install -e .`), every `>=` bound pinned to exactly
# its lower bound, beside ComfyUI 0.3.75's own requirements. Then the unit tests and one workflow in the
# real server run there. Called by .ci/run; run it by hand the same way.
#
#   scripts/lowest_env.sh            set up .venv-lowest (idempotent) and run the tests
#   scripts/lowest_env.sh --setup    only set it up
#
# Uses the ComfyUI tree of scripts/setup_env.sh (.comfyui/ComfyUI, or RR_COMFYUI_DIR): run that first.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv-lowest"
VPY="$VENV/bin/python"
PYTHON="${PYTHON:-python3.11}"
TORCH_PINS=(torch==2.14.1 torchvision==0.29.1)
COMFY_REQS=(comfyui-frontend-package==1.32.9 torchsde einops sentencepiece aiohttp yarl pyyaml scipy tqdm
            psutil alembic SQLAlchemy "av>=14.2.0" kornia spandrel "pydantic~=2.0" "pydantic-settings~=2.0")
# segment-anything: the optional [sam] extra at its lower bound, so the localisation tests (Meta SAM .pth
# files among them) run at the lowest transformers too.
TEST_REQS=(pytest hypothesis websocket-client segment-anything==1.0)

say() { printf '[lowest] %s\n' "$*"; }
pip_install() { say "pip install $*"; "$VPY" -m pip install --disable-pip-version-check --progress-bar off -q "$@"; }

# requirements.txt with each lower bound made exact: "transformers>=4.57.0,<6" -> "transformers==4.57.0"
CONSTRAINTS="$(mktemp)"
trap 'rm -f "$CONSTRAINTS"' EXIT
sed -n 's/^\([A-Za-z0-9_.-]*\)\(\[[^]]*\]\)\{0,1\}>=\([^,; ]*\).*/\1==\3/p' "$ROOT/requirements.txt" > "$CONSTRAINTS"
KEY="$( { cat "${BASH_SOURCE[0]}" "$ROOT/requirements.txt"; } | sha256sum | cut -d' ' -f1)"

if [[ -f "$VENV/.rr-lowest.stamp" && "$(cat "$VENV/.rr-lowest.stamp")" == "$KEY" ]]; then
    say "$VENV is up to date ($(tr '\n' ' ' < "$CONSTRAINTS"))"
else
    [[ -x "$VPY" ]] || { say "creating $VENV"; "$PYTHON" -m venv "$VENV"; }
    pip_install "${TORCH_PINS[@]}"
    # One resolution for everything, so ComfyUI's requirements cannot lift a pinned lower bound.
    pip_install -r "$ROOT/requirements.txt" -c "$CONSTRAINTS" "${COMFY_REQS[@]}" "${TEST_REQS[@]}"
    # The unit tests import the core as `rationalrewards`; --no-deps: the environment stays exactly
    # what requirements.txt resolved to (ComfyUI itself imports the pack from custom_nodes/, not this).
    pip_install --no-deps -e "$ROOT"
    "$VPY" - "$CONSTRAINTS" <<'PY'
import sys
from importlib.metadata import version
from packaging.version import Version
for line in open(sys.argv[1]):
    name, want = line.strip().split("==")
    got = version(name)
    assert Version(got) == Version(want), f"{name} {got} installed, {want} wanted"
    print(f"[lowest] {name}=={got}")
PY
    echo "$KEY" > "$VENV/.rr-lowest.stamp"
fi
if [[ "${1:-}" == "--setup" ]]; then exit 0; fi

cd "$ROOT"
say "unit tests + the shipped critique and localisation workflows in the real server, $("$VPY" -c 'import transformers; print("transformers", transformers.__version__)')"
# The `transformers serve` peer is a test tool of the newest environment (transformers[serving]), not a
# dependency of the pack: its two parity tests run in the main suite only.
# The toolkit's optional extras (diffusers for `refine`, trl/peft/datasets for PARROT's export check and
# distillation) are not in requirements.txt, so their tests run in the main suite only.
exec "$VPY" -m pytest -q -p no:cacheprovider tests/unit \
    --ignore tests/unit/test_pipeline_loop.py --ignore tests/unit/test_distill.py \
    --deselect tests/unit/test_parrot.py::test_export_loads_in_datasets_and_matches_the_llamafactory_layout \
    --deselect tests/unit/test_openai_server.py::test_greedy_parity_with_the_in_process_backend \
    --deselect tests/unit/test_openai_server.py::test_real_server_wrong_model_and_forced_answer \
    tests/integration/test_server_smoke.py::test_object_info_lists_core_nodes \
    tests/integration/test_critic_nodes.py::test_critique_workflow_runs_through_the_real_model_and_marks_unparsed \
    tests/integration/test_critic_nodes.py::test_critique_workflow_with_scripted_answer_reports_parsed_scores \
    tests/integration/test_localise_workflow.py::test_shipped_workflow_fixes_the_localised_defects_and_recritiques "$@"
