"""Convert ComfyUI workflows between the API format (what /prompt takes) and the UI
format (what users drag onto the canvas), using a server's /object_info for widget order.

`workflows/` ships UI files; their API twins under `tests/workflows/` are what the tests
queue. `ui_to_api(ui) == api` is checked by the tests so the two cannot drift.

A UI file also holds what only the canvas shows: where each node sits, the groups, and Note
nodes that explain each part (UI-only nodes: they are not in /object_info, the frontend never
queues them, and ``ui_to_api`` drops them). Those come from a hand-written layout
(scripts/workflow_layouts.py); without one, nodes are laid out in columns.
Usage (regenerate UI files from their twins and layouts against a running server; the UI file is named
by the layout's title, ``workflows/<title>.json``):
    python -m scripts.workflow_format http://127.0.0.1:8188 [X ...]     (default: every twin)
"""
from __future__ import annotations

import json
import sys
from collections import defaultdict

from scripts.workflow_layouts import CANVAS, CARD_NODES, CARD_ROOM, FIT_SHARE, LOD_ZOOM

WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
UI_ONLY = {"Note", "MarkdownNote"}          # frontend-only nodes: never queued
NOTE_COLOR, NOTE_BGCOLOR = "#432", "#653"   # the frontend's "yellow" node colour, used for notes
GROUP_PAD, GROUP_TITLE = 20, 80             # room around a group's nodes; above them the node title bar (30) and the group's own title


def _inputs(info: dict) -> list[tuple[str, str, dict]]:
    """(name, type, options) of a node's inputs in definition order: required, then optional."""
    out = []
    for section in ("required", "optional"):
        order = info.get("input_order", {}).get(section) or list(info["input"].get(section, {}))
        for name in order:
            spec = info["input"][section][name]
            kind = "COMBO" if isinstance(spec[0], list) else spec[0]
            out.append((name, kind, spec[1] if len(spec) > 1 else {}))
    return out


def _widget_slots(info: dict) -> list[tuple[str, bool]]:
    """(widget name, followed by a control_after_generate value) in widgets_values order."""
    return [(name, bool(opts.get("control_after_generate"))) for name, kind, opts in _inputs(info)
            if kind in WIDGET_TYPES]


def _is_link(value) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], int)


def _depths(api: dict) -> dict[str, int]:
    depth: dict[str, int] = {}

    def visit(nid: str, stack=()) -> int:
        if nid in depth:
            return depth[nid]
        parents = [v[0] for v in api[nid]["inputs"].values() if _is_link(v) and v[0] not in stack]
        depth[nid] = 1 + max((visit(p, stack + (nid,)) for p in parents), default=-1)
        return depth[nid]

    for nid in api:
        visit(nid)
    return depth


def _group(title: str, members: list[dict], color: str) -> dict:
    """A group whose box holds ``members`` (nodes or notes, each with pos and size) and the room a card
    node's card grows into below it (CARD_ROOM)."""
    x0 = min(m["pos"][0] for m in members) - GROUP_PAD
    y0 = min(m["pos"][1] for m in members) - GROUP_TITLE
    x1 = max(m["pos"][0] + m["size"][0] for m in members) + GROUP_PAD
    y1 = max(m["pos"][1] + m["size"][1] + (CARD_ROOM if m["type"] in CARD_NODES else 0) for m in members) + GROUP_PAD
    return {"title": title, "bounding": [x0, y0, x1 - x0, y1 - y0], "color": color, "font_size": 24, "flags": {}}


def api_to_ui(api: dict, object_info: dict, layout: dict | None = None) -> dict:
    """A UI-format graph with the same nodes, links and widget values.

    ``layout`` (see scripts/workflow_layouts.py): ``nodes`` {api id: [x, y, w, h]}, ``notes``
    [{"id", "text", "box": [x, y, w, h], "title"?}], ``groups`` [{"title", "color", "members":
    [api ids and note ids]}]. Without it the nodes are laid out in columns by depth."""
    layout = layout or {}
    depth = _depths(api)
    rows: dict[int, int] = defaultdict(int)
    nodes, links = [], []
    out_links: dict[tuple[str, int], list[int]] = defaultdict(list)
    for nid in sorted(api, key=int):
        for name, value in api[nid]["inputs"].items():
            if _is_link(value):
                links.append([len(links) + 1, int(value[0]), value[1], int(nid), None, None, name])
                out_links[(value[0], value[1])].append(len(links))
    for order, nid in enumerate(sorted(api, key=lambda n: (depth[n], int(n)))):
        node = api[nid]
        info = object_info[node["class_type"]]
        col = depth[nid]
        box = layout.get("nodes", {}).get(nid)
        pos, size = ([box[0], box[1]], [box[2], box[3]]) if box else ([50 + 400 * col, 50 + 260 * rows[col]],
                                                                       [340, 220])
        rows[col] += 1
        inputs, widgets = [], []
        for name, kind, opts in _inputs(info):
            value = node["inputs"].get(name)
            if kind in WIDGET_TYPES:
                widgets.append(value if not _is_link(value) else opts.get("default"))
                if opts.get("control_after_generate"):
                    widgets.append("fixed")
            if _is_link(value) or (kind not in WIDGET_TYPES and name in node["inputs"]):
                link_id = next(l[0] for l in links if l[3] == int(nid) and l[6] == name)
                entry = {"name": name, "type": kind, "link": link_id}
                if kind in WIDGET_TYPES:
                    entry["widget"] = {"name": name}
                inputs.append(entry)
            elif kind not in WIDGET_TYPES:
                inputs.append({"name": name, "type": kind, "link": None})
        for slot, entry in enumerate(inputs):
            if entry["link"] is not None:
                link = links[entry["link"] - 1]
                link[4], link[5] = slot, entry["type"]
        outputs = [{"name": oname, "type": otype, "slot_index": i, "links": out_links.get((nid, i), []) or None}
                   for i, (oname, otype) in enumerate(zip(info["output_name"], info["output"]))]
        title = node.get("_meta", {}).get("title")
        ui_node = {"id": int(nid), "type": node["class_type"], "pos": pos, "size": size, "flags": {},
                   "order": order, "mode": 0, "inputs": inputs, "outputs": outputs,
                   "properties": {"Node name for S&R": node["class_type"]}, "widgets_values": widgets}
        if title:
            ui_node["title"] = title
        nodes.append(ui_node)
    by_id = {str(n["id"]): n for n in nodes}
    for note in layout.get("notes", []):
        nid = str(note["id"])
        if nid in api or nid in by_id:
            raise ValueError(f"note id {nid} is already a node id")
        x, y, w, h = note["box"]
        ui_note = {"id": int(nid), "type": "MarkdownNote", "pos": [x, y], "size": [w, h], "flags": {},
                   "order": len(nodes), "mode": 0, "inputs": [], "outputs": [], "properties": {},
                   "widgets_values": [note["text"]], "color": NOTE_COLOR, "bgcolor": NOTE_BGCOLOR}
        if note.get("title"):
            ui_note["title"] = note["title"]
        nodes.append(ui_note)
        by_id[nid] = ui_note
    groups = [_group(g["title"], [by_id[str(m)] for m in g["members"]], g.get("color", "#3f789e"))
              for g in layout.get("groups", [])]
    return {"last_node_id": max(int(n) for n in by_id), "last_link_id": len(links), "nodes": nodes,
            "links": [l[:6] for l in links], "groups": groups, "config": {}, "extra": opening_view(nodes), "version": 0.4}


TITLE_BAR, FIT_PAD = 30, 10     # the frontend's node title bar above ``pos``; fitView's padding of the bounds
OPEN_ZOOM = 0.6                # the zoom an over-budget workflow opens at: just above LOD_ZOOM
OPEN_MARGIN = 20               # screen pixels left and above the graph's top-left corner in that view


def node_box(node: dict) -> tuple[float, float, float, float]:
    """A node as the frontend draws it: its body with the title bar above ``pos``."""
    (x, y), (w, h) = node["pos"], node["size"]
    return x, y - TITLE_BAR, x + w, y + h


def fitted_zoom(nodes: list[dict]) -> float:
    """The scale the frontend's "Fit view" sets on a CANVAS-sized canvas (ds.fitToBounds over the nodes'
    bounds, title bars included, padded by FIT_PAD)."""
    x0, y0, x1, y1 = _node_bounds(nodes)
    return FIT_SHARE * min(CANVAS[0] / (x1 - x0 + 2 * FIT_PAD), CANVAS[1] / (y1 - y0 + 2 * FIT_PAD))


def _node_bounds(nodes: list[dict]) -> tuple[float, float, float, float]:
    boxes = [node_box(n) for n in nodes]
    return min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)


def opening_view(nodes: list[dict]) -> dict:
    """The UI file's ``extra``: nothing when Fit view (what the frontend does with a workflow that has no saved
    view) reads at LOD_ZOOM or more; otherwise a saved view (``ds``) at OPEN_ZOOM on the graph's top-left
    corner, where its "Start here" note is, so it opens readable rather than as blank boxes, and the rest
    is one pan away."""
    if fitted_zoom(nodes) >= LOD_ZOOM:
        return {}
    x0, y0, _, _ = _node_bounds(nodes)
    # the frontend draws graph point p at (p + offset) * scale
    return {"ds": {"scale": OPEN_ZOOM, "offset": [round(OPEN_MARGIN / OPEN_ZOOM - x0, 1),
                                                  round(OPEN_MARGIN / OPEN_ZOOM - y0, 1)]}}


def ui_to_api(ui: dict, object_info: dict) -> dict:
    """The API-format graph a UI file describes (what the frontend would queue)."""
    link_src = {l[0]: (str(l[1]), l[2]) for l in ui["links"]}
    api = {}
    for node in ui["nodes"]:
        if node.get("mode", 0) != 0 or node["type"] in UI_ONLY:
            continue
        info = object_info[node["type"]]
        values = list(node.get("widgets_values") or [])
        linked = {i["name"]: link_src[i["link"]] for i in node.get("inputs", []) if i.get("link") is not None}
        inputs = {}
        for name, control in _widget_slots(info):
            if not values:
                raise ValueError(f"node {node['id']} ({node['type']}): too few widgets_values")
            value = values.pop(0)
            if control:
                values.pop(0)
            if name not in linked and value is not None:
                inputs[name] = value
        if values:
            raise ValueError(f"node {node['id']} ({node['type']}): {len(values)} widgets_values left over")
        for name, (src, slot) in linked.items():
            inputs[name] = [src, slot]
        entry = {"class_type": node["type"], "inputs": inputs}
        if node.get("title"):
            entry["_meta"] = {"title": node["title"]}
        api[str(node["id"])] = entry
    return api


def main(argv: list[str]) -> None:
    import urllib.request
    from pathlib import Path

    from scripts.workflow_layouts import LAYOUTS, ui_file
    url, names = argv[0], argv[1:]
    root = Path(__file__).resolve().parents[1]
    names = names or sorted(p.name[:-len(".api.json")] for p in (root / "tests" / "workflows").glob("*.api.json"))
    info = json.load(urllib.request.urlopen(url.rstrip("/") + "/object_info"))
    for name in names:
        api = json.loads((root / "tests" / "workflows" / f"{name}.api.json").read_text())
        ui = api_to_ui(api, info, LAYOUTS[name])
        assert ui_to_api(ui, info) == api, f"{name}: round trip changed the graph"
        ui_path = root / "workflows" / f"{ui_file(name)}.json"
        with open(ui_path, "w") as f:
            json.dump(ui, f, indent=1)
            f.write("\n")
        print(f"wrote {ui_path}: {len(ui['nodes'])} nodes, {len(ui['links'])} links")


if __name__ == "__main__":
    main(sys.argv[1:])
