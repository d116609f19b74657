"""Render the thumbnail of every shipped workflow: ``workflows/<title>.jpg``, what ComfyUI's Templates
browser shows beside a pack's template. Each workflow is drawn by the real frontend (headless Chromium
through Playwright, as the browser tests do) on a large canvas, fitted, then scaled down.

Usage (against a running ComfyUI with this pack): python -m scripts.workflow_thumbnails http://127.0.0.1:8188
Environment: RR_CHROMIUM (default /usr/bin/chromium).
"""
from __future__ import annotations

import io
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VIEW = (3200, 2000)        # drawn large so the frontend renders full detail, then scaled down
THUMB = (640, 400)
FIT = """() => { const c = window.app.canvas, g = window.app.graph;
  const boxes = g._nodes.map(n => [n.pos[0], n.pos[1] - 30, n.pos[0] + n.size[0], n.pos[1] + n.size[1]])
      .concat((g._groups || []).map(gr => { const b = gr._bounding || gr.bounding;
                                             return [b[0], b[1], b[0] + b[2], b[1] + b[3]]; }));
  const x0 = Math.min(...boxes.map(b => b[0])), y0 = Math.min(...boxes.map(b => b[1]));
  const x1 = Math.max(...boxes.map(b => b[2])), y1 = Math.max(...boxes.map(b => b[3]));
  const r = c.canvas.getBoundingClientRect(), pad = 120;
  const scale = Math.min((r.width - 2 * pad) / (x1 - x0), (r.height - 2 * pad) / (y1 - y0));
  c.ds.scale = scale;
  c.ds.offset = [pad / scale - x0 + ((r.width - 2 * pad) / scale - (x1 - x0)) / 2, pad / scale - y0];
  c.setDirty(true, true);
  const sx = (x) => r.left + (x + c.ds.offset[0]) * scale, sy = (y) => r.top + (y + c.ds.offset[1]) * scale;
  return {scale, clip: {x: sx(x0) - 10, y: sy(y0) - 10, width: sx(x1) - sx(x0) + 20,
                         height: Math.min(sy(y1), r.bottom) - sy(y0) + 20}}; }"""


def main(argv: list[str]) -> None:
    from PIL import Image
    from playwright.sync_api import sync_playwright

    from scripts.workflow_layouts import LAYOUTS, ui_file
    url = argv[0].rstrip("/")
    args = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-dev-shm-usage"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=os.environ.get("RR_CHROMIUM", "/usr/bin/chromium"),
                                    headless=True, args=args)
        context = browser.new_context(viewport={"width": VIEW[0], "height": VIEW[1]})
        context.add_init_script("localStorage.setItem('vueNodesBannerDismissed', 'true')")
        page = context.new_page()
        page.goto(url + "/", wait_until="networkidle", timeout=90_000)
        page.wait_for_function("() => window.app && window.app.graph && window.app.canvas", timeout=90_000)
        page.evaluate("async () => { await window.app.extensionManager.setting.set('Comfy.Minimap.Visible', false); }")
        for name in sorted(LAYOUTS):
            path = ROOT / "workflows" / f"{ui_file(name)}.json"
            page.evaluate("async (w) => { await window.app.loadGraphData(w); }", json.loads(path.read_text()))
            fitted = page.evaluate(FIT)
            page.wait_for_timeout(1500)          # images and fonts settle
            shot = page.screenshot(type="png", clip=fitted["clip"])   # the graph only, no app chrome
            with Image.open(io.BytesIO(shot)) as im:
                thumb = im.convert("RGB")
                thumb.thumbnail(THUMB, Image.LANCZOS)
                canvas = Image.new("RGB", THUMB, (32, 32, 32))
                canvas.paste(thumb, ((THUMB[0] - thumb.width) // 2, (THUMB[1] - thumb.height) // 2))
                out = path.with_suffix(".jpg")
                canvas.save(out, "JPEG", quality=82, optimize=True)
            print(f"wrote {out.name} (drawn at zoom {fitted['scale']:.2f})")
        browser.close()


if __name__ == "__main__":
    main(sys.argv[1:])
