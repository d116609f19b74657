"""Cheap guards against habits that break users' ComfyUI (see the style notes).

The pack's own source (not tests, benchmarks or scripts) must not: free CUDA caches behind
ComfyUI's back, shell out or pip-install, run code from model folders, seed the global RNG,
unpickle without weights_only, import ComfyUI from the core, or register through
NODE_CLASS_MAPPINGS (ComfyUI would then skip the V3 entry point).
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACK_SOURCES = sorted([ROOT / "__init__.py", *(ROOT / "models").rglob("*.py"), *(ROOT / "nodes").rglob("*.py")])
CORE_SOURCES = sorted((ROOT / "models").rglob("*.py"))

FORBIDDEN = {
    r"torch\.cuda\.empty_cache\(": "leave cache management to comfy.model_management",
    r"\bsubprocess\b|os\.system\(": "no processes spawned from the pack",
    r"pip\.main\(|ensurepip|[\"']pip[\"'],\s*[\"']install": "no installs at run time",
    r"trust_remote_code\s*=\s*True": "never run code from a model folder",
    r"torch\.manual_seed\(|torch\.random\.manual_seed\(|np\.random\.seed\(|random\.seed\(": "no global RNG seeding",
    r"^\s*NODE_CLASS_MAPPINGS\s*=": "V3 registration only (comfy_entrypoint)",
}


def _code(path: Path) -> str:
    """Source without comments and docstrings-ish lines, so explanations may name the habits."""
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            continue
        lines.append(line.split("  #")[0])
    return "\n".join(lines)


@pytest.mark.parametrize("pattern, why", FORBIDDEN.items())
def test_pack_source_avoids(pattern, why):
    hits = [f"{p.relative_to(ROOT)}:{i}" for p in PACK_SOURCES
            for i, line in enumerate(_code(p).splitlines(), 1) if re.search(pattern, line)]
    assert not hits, f"{why}: {hits}"


def test_torch_load_always_sets_weights_only():
    for path in PACK_SOURCES:
        code = _code(path)
        for m in re.finditer(r"torch\.load\(", code):
            call = code[m.start(): code.find(")", m.start()) + 200]
            assert "weights_only=True" in call, f"{path.relative_to(ROOT)}: torch.load without weights_only=True"


def test_core_imports_nothing_from_comfyui():
    pattern = re.compile(r"^\s*(from|import)\s+(comfy|comfy_api|comfy_execution|folder_paths|nodes|server)\b",
                         re.MULTILINE)
    hits = [str(p.relative_to(ROOT)) for p in CORE_SOURCES if pattern.search(_code(p))]
    assert not hits, f"models/ must stay usable headless; ComfyUI imported in {hits}"


def test_nothing_loads_project_code_by_file_path():
    """Project code is imported as packages (``rationalrewards``, the pack, ``bench``, ``tests``), never
    executed from a file path: a module loaded twice under two names has two sets of classes."""
    pattern = re.compile(r"spec_from_file_location|SourceFileLoader|\.exec_module\(|runpy\.run_path|\bimp\.load_source")
    sources = PACK_SOURCES + sorted([*(ROOT / "bench").rglob("*.py"), *(ROOT / "tests").rglob("*.py"),
                                     *(ROOT / "scripts").rglob("*.py")])
    me = Path(__file__).resolve()
    hits = [str(p.relative_to(ROOT)) for p in sources if p.resolve() != me and pattern.search(_code(p))]
    assert not hits, f"code loaded by file path in {hits}"
