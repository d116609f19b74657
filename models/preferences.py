"""Preference pairs (prompt, image A, image B[, source], which one people preferred) from a manifest.

A manifest is JSONL, JSON, CSV or parquet (read by ``tables.iter_rows``, like ``critique --manifest``)
with the columns ``prompt``, ``image_a``, ``image_b``, ``preferred`` and optionally ``source`` (the
edit's source image) and ``id``.
Relative image paths are read from the manifest's folder. Labels are normalised the way the
authors' benchmark adapters do (``a``/``left``/``leftvote``/``1``/``model_1`` -> A, ...).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from .rubric import Task
from .tables import TableError, iter_rows

_A = {"a", "image a", "left", "leftvote", "1", "model_1", "a>b"}
_B = {"b", "image b", "right", "rightvote", "2", "model_2", "b>a"}
_TIE = {"tie", "draw", "equal", "a=b", "both", "tievote", "bothbad_vote", "bothgood_vote"}
_ALIASES = {"prompt": ("prompt", "instruction", "instruct_prompt", "prompt_text"),
            "image_a": ("image_a", "left_image", "left_output_image", "candidate_1"),
            "image_b": ("image_b", "right_image", "right_output_image", "candidate_2"),
            "source": ("source", "source_image"),
            "preferred": ("preferred", "chosen", "label", "vote_type", "ranking"),
            "id": ("id", "pair_id")}


class ManifestError(ValueError):
    """A manifest row the pipeline cannot use; the message names the row and the fix."""


@dataclass(frozen=True)
class PreferencePair:
    id: str
    prompt: str
    image_a: Path
    image_b: Path
    preferred: str                 # "A", "B" or "tie"
    source: Path | None = None

    @property
    def task(self) -> Task:
        return Task.EDIT if self.source is not None else Task.T2I

    def image(self, side: str) -> Path:
        return self.image_a if side == "A" else self.image_b


def normalize_label(value: object) -> str | None:
    """``"A"``, ``"B"``, ``"tie"``, or None for a label nobody can read."""
    s = " ".join(str(value if value is not None else "").strip().lower().replace("-", "_").split())
    if s in _A:
        return "A"
    if s in _B:
        return "B"
    if s in _TIE:
        return "tie"
    return None


def _field(row: dict, name: str) -> str:
    for key in _ALIASES[name]:
        value = row.get(key)
        if value is not None and str(value).strip():
            return str(value).strip()
    return ""


def read_manifest(path: str | Path) -> list[PreferencePair]:
    """Every row of a manifest as a :class:`PreferencePair`; bad rows are errors."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"manifest {path} does not exist")
    try:
        return _read(path)
    except TableError as e:
        raise ManifestError(str(e)) from None


def _read(path: Path) -> list[PreferencePair]:
    base = path.parent
    pairs: list[PreferencePair] = []
    seen: set[str] = set()
    for n, row in enumerate(iter_rows(path), start=1):
        where = f"{path}, row {n}"
        values = {k: _field(row, k) for k in _ALIASES}
        missing = [k for k in ("prompt", "image_a", "image_b", "preferred") if not values[k]]
        if missing:
            raise ManifestError(f"{where}: missing {', '.join(missing)} (columns: prompt, image_a, image_b, "
                                "preferred, optional source and id)")
        label = normalize_label(values["preferred"])
        if label is None:
            raise ManifestError(f"{where}: preferred = {values['preferred']!r} is not a label; use A, B or tie")
        images = {}
        for key in ("image_a", "image_b", "source"):
            if values[key]:
                p = Path(values[key]).expanduser()
                p = p if p.is_absolute() else base / p
                if not p.is_file():
                    raise ManifestError(f"{where}: {key} {p} does not exist")
                images[key] = p
        pair_id = values["id"] or hashlib.sha1("\0".join(
            [values["prompt"], values["image_a"], values["image_b"], values["source"]]).encode()).hexdigest()[:12]
        if pair_id in seen:
            raise ManifestError(f"{where}: id {pair_id!r} appears twice; ids must be unique (they key the resume "
                                "files)")
        seen.add(pair_id)
        pairs.append(PreferencePair(pair_id, values["prompt"], images["image_a"], images["image_b"], label,
                                    images.get("source")))
    return pairs
