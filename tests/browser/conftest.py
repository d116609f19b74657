"""Browser fixtures: Debian's Chromium driven by Playwright (no `playwright install`) against the
session's real ComfyUI server (``comfy_server``).

* ``chromium``  -> the browser; skipped when no Chromium/Playwright is installed locally, but a
  failure when ``RR_REQUIRE_BROWSER=1`` (CI sets it: there a missing browser is a broken setup,
  not a reason to skip). ``RR_CHROMIUM`` overrides the path (default /usr/bin/chromium).
* ``comfy_page`` -> a ``ComfyPage``: one loaded ComfyUI frontend per test module, with helpers to
  load a graph, queue it from the page and read the node cards.

Both are module-scoped, so Playwright's event loop lives only while the browser tests run.

Screenshots go to ``test-artifacts/browser/``.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.comfy_server import ARTIFACTS_DIR

SCREENSHOTS = ARTIFACTS_DIR / "browser"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]


def pytest_configure(config):
    config.addinivalue_line("markers", "browser: drives the ComfyUI frontend in headless Chromium")


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.browser)


def _browser_required() -> bool:
    return os.environ.get("RR_REQUIRE_BROWSER", "").lower() in ("1", "true", "yes")


def _unavailable(reason: str):
    if _browser_required():
        pytest.fail(f"{reason} (RR_REQUIRE_BROWSER is set: .ci/run installs chromium and playwright)",
                    pytrace=False)
    pytest.skip(reason)


def chromium_path() -> str | None:
    """``$RR_CHROMIUM`` when set (and only it), else Debian's /usr/bin/chromium or chromium on PATH."""
    override = os.environ.get("RR_CHROMIUM")
    candidates = [override] if override else ["/usr/bin/chromium", shutil.which("chromium")]
    return next((c for c in candidates if c and os.access(c, os.X_OK)), None)


@pytest.fixture(scope="module")
def chromium():
    exe = chromium_path()
    if exe is None:
        where = os.environ.get("RR_CHROMIUM") or "/usr/bin/chromium"
        _unavailable(f"no Chromium at {where} (apt-get install -y chromium, or set RR_CHROMIUM)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed (pip install playwright; no browser download needed)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


class ComfyPage:
    """The ComfyUI frontend in a page, with the few helpers the card tests need."""

    def __init__(self, page, client):
        self.page, self.client = page, client
        self.errors: list[str] = []   # uncaught page errors, and console errors from this pack's card
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("console", lambda m: m.type == "error" and "RationalRewards" in m.text and self.errors.append(m.text))

    def open(self) -> "ComfyPage":
        self.page.goto(self.client.url + "/", wait_until="networkidle", timeout=90_000)
        self.page.wait_for_function("() => window.app && window.app.graph && window.app.canvas "
                                    "&& window.app.extensions.some(e => e.name === 'RationalRewards.CritiqueCard')",
                                    timeout=90_000)
        return self

    def load_api(self, prompt: dict, name: str = "rr-test.json") -> None:
        """Load an API-format graph into the canvas, as dropping an API json file does."""
        self.page.evaluate("async ([p, n]) => { await window.app.loadApiJson(p, n); }", [prompt, name])

    def load_workflow(self, workflow: dict) -> None:
        """Load a UI-format workflow (a file of workflows/) into the canvas."""
        self.page.evaluate("async (w) => { await window.app.loadGraphData(w); }", workflow)

    def queue_and_wait(self, timeout: float = 180) -> dict:
        """Queue the canvas graph from the page (app.queuePrompt, the Queue button's path) and return
        the server's history entry once it finished."""
        with self.page.expect_response(lambda r: r.url.endswith("/api/prompt") and r.request.method == "POST",
                                       timeout=30_000) as info:
            self.page.evaluate("() => window.app.queuePrompt(0, 1)")
        body = info.value.json()
        assert info.value.status == 200 and not body.get("node_errors"), f"the page could not queue the graph: {body}"
        return self._wait(body["prompt_id"], timeout)

    def _wait(self, prompt_id: str, timeout: float) -> dict:
        entry = self.client.wait(prompt_id, timeout=timeout)
        if entry["status"].get("status_str") != "success":
            err = self.client.execution_error(entry)
            raise AssertionError(f"the queued graph failed: {err and err.get('exception_message')}\n"
                                 f"{self.client.log_tail(40)}")
        return entry

    def wait_card(self, node_id: str, selector: str = ".rr-card", timeout: float = 30_000):
        """The card element of a node once ``selector`` matches inside it (a JSHandle)."""
        self.page.wait_for_function(
            """([id, sel]) => { const n = window.app.graph.getNodeById(Number(id));
                 const w = n && n.widgets && n.widgets.find(w => w.name === 'rr_card');
                 return !!(w && w.element.querySelector(sel)); }""", arg=[node_id, selector], timeout=timeout)
        return self.page.evaluate_handle(
            "(id) => window.app.graph.getNodeById(Number(id)).widgets.find(w => w.name === 'rr_card').element",
            node_id)

    def focus_node(self, node_id: str) -> None:
        """Centre the canvas on a node at zoom 1 so its card is on screen for a screenshot."""
        self.page.evaluate(
            """(id) => { const c = window.app.canvas, n = window.app.graph.getNodeById(Number(id));
                 c.ds.scale = 1; c.centerOnNode(n);
                 c.ds.offset[1] = -n.pos[1] + 130; c.setDirty(true, true); }""", node_id)
        # drawn: the canvas has redrawn at the new offset and the node's card sits inside the viewport
        self.page.wait_for_function(
            """(id) => { const n = window.app.graph.getNodeById(Number(id));
                 const w = n && n.widgets && n.widgets.find(w => w.name === 'rr_card');
                 if (!w) return true;
                 const r = w.element.getBoundingClientRect();
                 return r.width > 0 && r.top >= 0 && r.top < window.innerHeight; }""", arg=node_id, timeout=15000)
        self.next_frames()

    def next_frames(self, frames: int = 2) -> None:
        """Return after the browser has painted ``frames`` more animation frames (no fixed delay)."""
        self.page.evaluate("""(n) => new Promise(done => { const step = k => k ? requestAnimationFrame(
                                  () => step(k - 1)) : done(); step(n); })""", frames)

    def screenshot(self, name: str, node_id: str | None = None) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        if node_id is not None:
            self.focus_node(node_id)
        path = SCREENSHOTS / f"{name}.png"
        self.page.screenshot(path=str(path))
        return path

    def set_setting(self, key: str, value) -> None:
        self.page.evaluate("async ([k, v]) => { await window.app.extensionManager.setting.set(k, v); }", [key, value])
        self.page.wait_for_function("([k, v]) => window.app.extensionManager.setting.get(k) === v", arg=[key, value],
                                    timeout=15000)
        self.next_frames()


@pytest.fixture(scope="module")
def comfy_page(chromium, comfy_server):
    context = chromium.new_context(viewport={"width": 1400, "height": 1000})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=comfy_server.url)
    # the "Nodes 2.0" banner remembers its dismissal in localStorage, not in the user's settings
    context.add_init_script("localStorage.setItem('vueNodesBannerDismissed', 'true')")
    page = context.new_page()
    try:
        comfy_page = ComfyPage(page, comfy_server).open()
        comfy_page.set_setting("Comfy.Minimap.Visible", False)  # keeps the screenshots clear
        yield comfy_page
    finally:
        context.close()
