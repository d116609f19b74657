"""Preference pairs (prompt, image A, image B[, source], which one people preferred) from a manifest.

A manifest is JSONL, JSON, CSV or parquet (read by ``tables.iter_rows``, like ``critique --manifest``)
with the columns ``prompt``, ``image_a``, ``image_b``, ``preferred`` and optionally ``source`` (the
edit's source image) and ``id``.
Relative image paths are read from the manifest's folder. Labels are read by the benchmark readers'
``normalize_label`` (``a``/``left``/``leftvote``/``1``/``model_1`` -> A, ...).

A benchmark file (``rationalrewards eval --format``'s readers, ``benchmarks.read_benchmark``) becomes
preference pairs through :func:`from_benchmark`, which writes embedded image cells to files so every
pair can be linked or copied beside an export.
"""
from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from . import benchmarks
from ..judging.rubric import Task
from .outputs import write_atomic
from .tables import TableError, is_empty_cell, iter_rows, load_image
from ..errors import RationalRewardsError

_SIDE = {"A>B": "A", "B>A": "B", "A=B": "tie"}
_ALIASES = {"prompt": ("prompt", "instruction", "instruct_prompt", "prompt_text"),
            "image_a": ("image_a", "left_image", "left_output_image", "candidate_1"),
            "image_b": ("image_b", "right_image", "right_output_image", "candidate_2"),
            "source": ("source", "source_image"),
            "preferred": ("preferred", "chosen", "label", "vote_type", "ranking"),
            "id": ("id", "pair_id")}


class ManifestError(RationalRewardsError, ValueError):
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
    return _SIDE.get(benchmarks.normalize_label(value))


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


def from_benchmark(pairs: Sequence[benchmarks.Pair], image_dir: str | Path
                   ) -> tuple[list[PreferencePair], dict[str, str]]:
    """Benchmark pairs as preference pairs, and ``{pair id: why}`` for those left out (no label, a
    missing or unreadable image). Path cells stay where they are; embedded images (bytes, dicts with
    bytes) are written once to ``image_dir``, named by their content, so a rerun writes nothing new."""
    image_dir = Path(image_dir)
    kept: list[PreferencePair] = []
    skipped: dict[str, str] = {}
    for pair in pairs:
        label = _SIDE.get(pair.label or "")
        if label is None:
            skipped[pair.id] = "no preference label"
            continue
        if pair.task is Task.EDIT and is_empty_cell(pair.source):
            skipped[pair.id] = "an edit pair without a source image"
            continue
        try:
            a, b = (_image_file(c, pair.base_dir, image_dir) for c in (pair.image_a, pair.image_b))
            src = _image_file(pair.source, pair.base_dir, image_dir) if pair.task is Task.EDIT else None
        except (OSError, ValueError) as e:
            skipped[pair.id] = f"image: {e}"
            continue
        kept.append(PreferencePair(pair.id, pair.prompt, a, b, label, src))
    return kept, skipped


def _image_file(cell: Any, base_dir: Path | None, image_dir: Path) -> Path:
    """The file behind an image cell: its own path when it is one, else the decoded image saved once."""
    if isinstance(cell, (list, tuple)) and cell:
        cell = cell[0]
    path = cell.get("path") if isinstance(cell, dict) and not cell.get("bytes") else cell
    if isinstance(path, (str, Path)) and str(path).strip():
        p = Path(str(path).strip()).expanduser()
        p = p if p.is_absolute() or base_dir is None else base_dir / p
        if not p.is_file():
            raise FileNotFoundError(f"image file {p} does not exist")
        return p
    img = load_image(cell, base_dir)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    data = buf.getvalue()
    out = image_dir / f"{hashlib.sha1(data).hexdigest()[:16]}.png"
    if not out.is_file():
        write_atomic(out, data, f"the images already in {image_dir} are whole and kept")
    return out
