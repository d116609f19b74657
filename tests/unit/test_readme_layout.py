"""The README's Architecture section and docs/architecture.md name the core's folders as they are: every
concern folder of ``models/`` is named in both, and every ``models/...`` path they name exists."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CORE_FOLDERS = sorted(p.name for p in (ROOT / "models").iterdir() if p.is_dir() and not p.name.startswith("__"))


def architecture_section() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return text.split("\n## Architecture\n", 1)[1].split("\n## ", 1)[0]


def test_the_readme_and_the_architecture_page_name_every_core_folder():
    doc = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    for folder in CORE_FOLDERS:
        assert f"`{folder}/`" in architecture_section(), f"README Architecture does not name {folder}/"
        assert re.search(rf"^\s+{folder}/\s", doc, re.M), f"docs/architecture.md does not describe {folder}/"
    assert "docs/architecture.md" in architecture_section()


def test_every_core_path_the_architecture_page_names_exists():
    doc = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    named = set(re.findall(r"`((?:models|nodes|tests|web)/[\w/.]+)`", doc))
    named |= {f"models/{folder}/{f}" for folder in CORE_FOLDERS
              for f in re.findall(rf"`{folder}/([\w.]+\.py)`", doc)}
    missing = sorted(p for p in named if not (ROOT / p).exists())
    assert named and not missing, missing
    for name in ("Critic.prepare", "Backend", "build_critic" if "build_critic" in doc else "factory.py"):
        assert name in doc
