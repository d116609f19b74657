"""Write locales/en/nodeDefs.json: the plain input names of every node, from a server's /object_info.

ComfyUI's frontend labels a widget by ``nodeDefs.<node>.inputs.<input>.name`` from the packs'
``locales/`` folders (served at /i18n) and falls back to the input id: the V3 ``display_name`` of an
input is not shown by every frontend. The node schemas stay the one source; this file is derived
from them, and a test checks the two agree.
Usage: python -m scripts.node_locales http://127.0.0.1:8188 [locales/en/nodeDefs.json]
"""
from __future__ import annotations

import json
import sys


def node_defs(object_info: dict, prefix: str = "RR_") -> dict:
    """``{node: {"inputs": {input: {"name"}}}}`` for the pack's nodes. No node ``display_name``: a locale's
    would override the server's, and the server words it for the ComfyUI it runs in (the search words join
    the name where that ComfyUI has no search aliases: ``nodes/common.naming``)."""
    out = {}
    for node_id, info in sorted(object_info.items()):
        if not node_id.startswith(prefix):
            continue
        inputs = {}
        for section in ("required", "optional"):
            for name, spec in info["input"].get(section, {}).items():
                shown = (spec[1] if len(spec) > 1 else {}).get("display_name")
                if shown and shown != name:
                    inputs[name] = {"name": shown}
        if inputs:
            out[node_id] = {"inputs": inputs}
    return out


def main(argv: list[str]) -> None:
    import urllib.request
    url, path = argv[0], argv[1] if len(argv) > 1 else "locales/en/nodeDefs.json"
    info = json.load(urllib.request.urlopen(url.rstrip("/") + "/object_info"))
    with open(path, "w", encoding="utf-8") as f:
        json.dump(node_defs(info), f, indent=1, ensure_ascii=False)
        f.write("\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main(sys.argv[1:])
