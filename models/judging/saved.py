"""What a saved critique holds: the record written beside an image and into its PNG metadata.

Only what the critic judged and wrote goes in (the request, the scores, the text); never where
the critic came from (folders, server URLs, key variable names), so a PNG shared for curation
carries the critique and nothing about the machine that made it.
"""
from __future__ import annotations

import json
from typing import Any

from .critique import Critique

FORMAT = "rationalrewards.critique/1"
PNG_KEY = "rationalrewards"      # the PNG text chunk (beside ComfyUI's own "prompt" and "workflow")


def critique_record(critique: Critique, request: str, weights: str, image: str | None = None) -> dict[str, Any]:
    """The saved form of one critique. ``image``, the file's own name (its folder is dropped), goes into
    the JSON beside the image; the copy inside the PNG has none (it is that image)."""
    record = {"format": FORMAT, "request": request, "weights": weights, **critique.to_dict(weights)}
    if image is not None:
        record = {"format": FORMAT, "image": image.replace("\\", "/").rsplit("/", 1)[-1]} | record
    return record


def record_json(record: dict[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False, indent=2)
