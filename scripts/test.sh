#!/usr/bin/env bash
# Run the test suite (README command #2).
#
#   scripts/test.sh [extra pytest arguments...]      e.g. scripts/test.sh -k smoke
#
# Runs scripts/setup_env.sh --test (fast when nothing changed), then
#   .venv/bin/python -m pytest tests -q "$@"
# Integration tests start a real ComfyUI server (--cpu) on a free loopback port; its log goes to
# test-artifacts/. Exits with pytest's status.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup_env.sh" --test

cd "$ROOT"
echo "[test] .venv/bin/python -m pytest tests -q $*"
exec "$ROOT/.venv/bin/python" -m pytest tests -q "$@"
