"""Cheap guards against habits that break users' ComfyUI (see the style notes).

The pack's own source (not tests, benchmarks or scripts) must not: free CUDA caches behind
ComfyUI's back, shell out or pip-install, run code from model folders, seed the global RNG,
unpickle without weights_only, import ComfyUI from the core, or register through
NODE_CLASS_MAPPINGS (ComfyUI would then skip the V3 entry point).
"""
from __future__ import annotations

import ast
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


def torch_load_calls_without_weights_only(source: str) -> list[int]:
    """Line numbers of ``torch.load`` calls (however torch or load was imported) that do not pass
    ``weights_only=True`` themselves: each call's own keywords are read from the AST, so a
    ``weights_only=True`` on a neighbouring call, in a comment or in a string never counts."""
    tree = ast.parse(source)
    torch_names, load_names = {"torch"}, set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            torch_names |= {a.asname or a.name for a in node.names if a.name == "torch"}
        elif isinstance(node, ast.ImportFrom) and node.module in ("torch", "torch.serialization"):
            load_names |= {a.asname or a.name for a in node.names if a.name == "load"}

    def is_torch_load(func: ast.expr) -> bool:
        if isinstance(func, ast.Name):
            return func.id in load_names
        if isinstance(func, ast.Attribute) and func.attr == "load":
            base = func.value
            if isinstance(base, ast.Name):
                return base.id in torch_names
            return (isinstance(base, ast.Attribute) and base.attr == "serialization"
                    and isinstance(base.value, ast.Name) and base.value.id in torch_names)
        return False

    bad = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and is_torch_load(node.func):
            kw = {k.arg: k.value for k in node.keywords}
            value = kw.get("weights_only")
            if not (isinstance(value, ast.Constant) and value.value is True):
                bad.append(node.lineno)
    return sorted(bad)


def test_torch_load_always_sets_weights_only():
    hits = [f"{p.relative_to(ROOT)}:{line}" for p in PACK_SOURCES
            for line in torch_load_calls_without_weights_only(p.read_text(encoding="utf-8"))]
    assert not hits, f"torch.load without its own weights_only=True: {hits}"


@pytest.mark.parametrize("source, bad", [
    ("import torch\nx = torch.load(p, weights_only=True)", []),
    ("import torch\nx = torch.load(p)\ny = torch.load(q, weights_only=True)", [2]),   # the next call's flag
    ("import torch\nx = torch.load(p)  # weights_only=True", [2]),
    ("import torch\nx = torch.load(p, map_location='cpu', weights_only=False)", [2]),
    ("import torch\nx = torch.load(p, weights_only=flag)", [2]),
    ("import torch\nx = torch.load(p, **{'weights_only': True})", [2]),
    ("import torch\nx = torch.load(\n    p,\n    map_location='cpu',\n    weights_only=True,\n)", []),
    ("import torch as T\nx = T.load(p)", [2]),
    ("from torch import load\nx = load(p)", [2]),
    ("from torch import load as tl\nx = tl(p, weights_only=True)\ny = tl(q)", [3]),
    ("import torch\nx = torch.serialization.load(p)", [2]),
    ("import json\nx = json.load(fh)", []),
])
def test_the_torch_load_guard_reads_each_calls_own_arguments(source, bad):
    assert torch_load_calls_without_weights_only(source) == bad


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


def test_only_the_ray_engine_imports_ray():
    """Ray is an optional extra for the headless toolkit: one module imports it (lazily, when --engine ray
    asks), so the ComfyUI side and the rest of the core never need it. Imports inside functions count."""
    engine = ROOT / "models" / "toolkit" / "ray_engine.py"
    hits = []
    for path in PACK_SOURCES:
        if path == engine:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            if any(n == "ray" or n.startswith("ray.") for n in names):
                hits.append(f"{path.relative_to(ROOT)}:{node.lineno}")
            if isinstance(node, ast.ImportFrom) and (node.module or "").endswith("ray_engine") \
                    and not path.is_relative_to(ROOT / "models" / "toolkit"):
                hits.append(f"{path.relative_to(ROOT)}:{node.lineno} (ray_engine)")
    assert not hits, f"Ray imported outside models/toolkit/ray_engine.py: {hits}"
    assert "import ray" in engine.read_text(encoding="utf-8")            # the guard looks at the right file
