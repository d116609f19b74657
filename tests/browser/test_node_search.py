"""Issue 22: the words an artist types find the pack's nodes through the frontend's own node search
(double-click on the canvas, type). On a ComfyUI without search aliases the words sit in the display
names; where the server sends ``search_aliases`` the frontend searches those too.

Runs against the frontend the session's server serves (``RR_FRONTEND_ROOT`` points the server at
another one, e.g. a newer ``comfyui-frontend-package`` unpacked from PyPI)."""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration

# word -> the nodes it must find (others may come too)
WORDS = {
    "score": {"RR_CritiqueImage", "RR_Rank"},
    "judge": {"RR_CritiqueEdit", "RR_Compare"},
    "aesthetic": {"RR_CritiqueImage"},
    "quality": {"RR_CritiqueEdit"},
    "best of": {"RR_Rank"},
    "inpaint": {"RR_LocaliseDefects", "RR_DefectPhrases"},
    "defect": {"RR_LocaliseDefects", "RR_DefectPhrases"},
    "reward": {"RR_LoadCritic"},
    "critic": {"RR_LoadCritic", "RR_ServerCritic"},
}

CANVAS_CENTRE = """() => { const r = window.app.canvas.canvas.getBoundingClientRect();
  return [r.left + r.width / 2, r.top + r.height / 2]; }"""

RESULTS = """() => [...document.querySelectorAll('[role=option]')]
    .filter(o => !o.querySelector('input'))
    .map(o => o.innerText.split('\\n')[0].replace(/\\u00a0/g, ' ').trim())"""


@pytest.fixture(scope="module")
def display_names(comfy_server) -> dict[str, str]:
    info = comfy_server.object_info()
    return {node["display_name"]: node_id for node_id, node in info.items() if node_id.startswith("RR_")}


SEARCH_BOX = "input[placeholder^='Search'], input[placeholder^='Add a node']"   # 1.32 / 1.58 wording
TYPED = """([sel, q]) => { const i = document.querySelector(sel); return !!i && i.value === q; }"""


def search(comfy_page, query: str) -> list[str]:
    """What the frontend's node search lists for ``query``: double-click the empty canvas and type."""
    page = comfy_page.page
    page.evaluate("() => window.app.graph.clear()")
    x, y = page.evaluate(CANVAS_CENTRE)
    page.mouse.dblclick(x, y)
    page.locator(SEARCH_BOX).first.wait_for(state="visible", timeout=15_000)
    page.keyboard.type(query)
    page.wait_for_function(TYPED, arg=[SEARCH_BOX, query], timeout=15_000)
    page.wait_for_function(f"() => ({RESULTS})().length > 0", timeout=15_000)
    comfy_page.next_frames(10)     # the list follows the typed text within a few frames
    found = page.evaluate(RESULTS)
    page.keyboard.press("Escape")
    page.locator(SEARCH_BOX).first.wait_for(state="hidden", timeout=15_000)
    return found


def test_the_pack_names_follow_one_pattern(display_names):
    assert len(display_names) >= 13
    assert all(name.endswith(" (RationalRewards)") for name in display_names), sorted(display_names)
    # the old frontends' search (Fuse, threshold 0.3) misses a word that starts 30 or more characters in
    for name in display_names:
        words = name.removesuffix(" (RationalRewards)").partition(" · ")[2]
        for word in filter(None, words.split(", ")):
            assert name.index(word) < 30, f"{word!r} starts too far into {name!r} for the search to find it"


@pytest.mark.parametrize("word", sorted(WORDS))
def test_the_words_an_artist_types_find_the_nodes(comfy_page, display_names, word):
    found = search(comfy_page, word)
    ids = {display_names[name] for name in found if name in display_names}
    assert WORDS[word] <= ids, f"{word!r} found {found}"
    assert not comfy_page.errors
