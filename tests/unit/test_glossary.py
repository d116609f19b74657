"""One glossary (issue 22): the text an artist reads names things as the screen does. Input ids that have
a plain on-screen name (``allow_download`` shows as "download if missing") never appear in tooltips, node
descriptions, error messages, workflow notes or the artist README; nor do the old words for the frontend's
buttons ("Queue", "Browse Templates"), the renamed widgets, or node ids where a node's name belongs."""
from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

from tests.twins import load_ui, twin_names

ROOT = Path(__file__).resolve().parents[2]
LOCALE = json.loads((ROOT / "locales" / "en" / "nodeDefs.json").read_text(encoding="utf-8"))
# words the screen no longer uses: the current frontends say Run and Templates; the widgets say these
STALE = ["press **Queue**", "Queue Prompt", "Browse Templates", "allow download", "'allow_download'",
         "Load RationalRewards Critic", "*quantization*", "RR_LoadCritic", "RR Load Critic"]
# the node files with schemas or messages
# residency.py and native_backend.py hold no node: no tooltip, description or node error of their own
NODE_FILES = sorted(p for p in (ROOT / "nodes").glob("*.py") if p.name not in ("__init__.py", "residency.py", "native_backend.py"))


# ids that are on screen elsewhere under the same spelling: the Critique nodes' output "critique_data", and
# the batch_size widget of ComfyUI's own Empty Latent Image (which the notes refer to)
SHOWN_ELSEWHERE = {"critique_data", "batch_size"}


def raw_names() -> set[str]:
    """Input ids shown under another name (snake_case ids only: a plain word may be an ordinary word)."""
    return {name for node in LOCALE.values() for name, shown in node.get("inputs", {}).items()
            if "_" in name and shown["name"] != name} - SHOWN_ELSEWHERE


def _strings(node: ast.AST) -> list[str]:
    return [n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def user_texts_in(path: Path) -> list[str]:
    """Tooltips, descriptions and error messages of a node file (what the artist reads in the UI)."""
    texts: list[str] = []
    for call in (n for n in ast.walk(ast.parse(path.read_text(encoding="utf-8"))) if isinstance(n, ast.Call)):
        texts += [s for kw in call.keywords if kw.arg in ("tooltip", "description") for s in _strings(kw.value)]
        if getattr(call.func, "id", None) == "fail" and len(call.args) > 1:
            texts += _strings(call.args[1])
    return texts


def artist_readme() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return text.split("\n## Architecture\n", 1)[0]


def notes() -> list[str]:
    return [n["widgets_values"][0] for name in twin_names() for n in load_ui(name)["nodes"]
            if n["type"] in ("Note", "MarkdownNote")]


SURFACES = {"README (artist part)": lambda: [artist_readme()], "workflow notes": notes,
            **{f"nodes/{p.name}": (lambda p=p: user_texts_in(p)) for p in NODE_FILES}}


def test_the_glossary_knows_the_renamed_inputs():
    assert {"allow_download", "max_pixels", "max_regions", "mask_mode", "both_orders", "stop_dimensions"} <= raw_names()


@pytest.mark.parametrize("surface", sorted(SURFACES))
def test_user_facing_text_uses_the_names_on_screen(surface):
    texts = SURFACES[surface]()
    assert texts, f"{surface}: nothing read"
    ids = raw_names()
    found = sorted({f"{word!r}" for text in texts for word in ids if re.search(rf"\b{re.escape(word)}\b", text)}
                   | {f"{stale!r}" for text in texts for stale in STALE if stale in text})
    assert not found, f"{surface} names what the screen does not show: {', '.join(found)}"
