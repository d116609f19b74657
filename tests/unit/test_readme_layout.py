"""The README's "Layout" section matches the tree: every file it names exists, and every module of the
core and the nodes is named (so a newcomer opens the right critique.py / loop.py / loader.py)."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def layout_rows() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    return [line for line in section.splitlines() if line.startswith("| ") and "`" in line]


def named_paths() -> set[str]:
    """Backticked paths; a bare file name after a path in the same cell lives in that path's folder."""
    paths: set[str] = set()
    for row in layout_rows():
        for cell in row.split("|")[2:]:
            folder = ""
            for name in re.findall(r"`([^`]+)`", cell):
                if "/" in name:
                    folder = name.rsplit("/", 1)[0]
                    paths.add(name)
                elif re.fullmatch(r"[\w.*-]+\.(py|js|css|sh|txt|json)", name):
                    paths.add(f"{folder}/{name}" if folder else name)
    return paths


def test_every_named_file_exists():
    missing = [p for p in sorted(named_paths()) if not (list(ROOT.glob(p)) if "*" in p else (ROOT / p).exists())]
    assert not missing, f"README Layout names files that are not in the tree: {missing}"


def test_every_core_and_node_module_is_named():
    named = named_paths()
    modules = [str(p.relative_to(ROOT)) for folder in ("models", "nodes") for p in (ROOT / folder).rglob("*.py")
               if p.name != "__init__.py" or folder == "nodes" and p.parent.name == "nodes"]
    unnamed = [m for m in sorted(modules) if m not in named]
    assert not unnamed, f"README Layout does not say what these files own: {unnamed}"
