"""Issue 22, item 5, in the real frontend: every shipped workflow opens readable on a 1600 x 900 window.

A workflow that fits the budget (scripts/workflow_layouts.py MAX_BOX) opens with the frontend's own
fit to the whole graph at a zoom where nodes are drawn with their text; the two that do not fit
(tests/unit/test_workflow_fit.py OVER_BUDGET) open at their saved view, readable, with "Start here" on
screen. Either way nothing opens as blank boxes."""
from __future__ import annotations

import json

import pytest

from scripts.workflow_layouts import LOD_ZOOM, ui_file
from tests.browser.conftest import ComfyPage
from tests.twins import UI_DIR, twin_names
from tests.unit.test_workflow_fit import OVER_BUDGET

WINDOW = {"width": 1600, "height": 900}


@pytest.fixture(scope="module")
def small_window(chromium, comfy_server):
    context = chromium.new_context(viewport=WINDOW)
    context.add_init_script("localStorage.setItem('vueNodesBannerDismissed', 'true')")
    try:
        yield ComfyPage(context.new_page(), comfy_server).open()
    finally:
        context.close()


@pytest.mark.parametrize("name", twin_names())
def test_every_workflow_opens_readable_on_a_1600_px_window(small_window, name):
    workflow = json.loads((UI_DIR / f"{ui_file(name)}.json").read_text())
    small_window.load_workflow(workflow)
    small_window.next_frames(3)
    view = small_window.page.evaluate("""() => { const c = window.app.canvas;
        const start = window.app.graph._nodes.find(n => n.title === 'Start here');
        // where the note's corner is drawn: the frontend draws graph point p at (p + offset) * scale
        const [x, y] = start ? [0, 1].map(i => (start.pos[i] + c.ds.offset[i]) * c.ds.scale) : [NaN, NaN];
        return {scale: c.ds.scale, lowQuality: c.low_quality, threshold: c._lowQualityZoomThreshold,
                start: start ? [x, y] : null}; }""")
    print(f"{name}: {view}")
    if view["threshold"] is not None:     # the frontend's own limit, when it exposes it
        assert view["threshold"] == pytest.approx(LOD_ZOOM, abs=0.01), "the frontend's LOD threshold moved"
    assert view["scale"] >= LOD_ZOOM and view["lowQuality"] is False, f"{name} opens as blank boxes: {view}"
    if name in OVER_BUDGET:
        assert view["scale"] == pytest.approx(0.6), f"{name}: not its saved view"
    else:
        assert view["scale"] < 0.99, f"{name}: the frontend did not fit the graph (scale {view['scale']})"
    x, y = view["start"]
    assert 0 <= x < WINDOW["width"] / 2 and 0 <= y < WINDOW["height"] / 2, f"{name}: Start here is off screen: {view}"
