"""Readers for the preference benchmarks, in the file layouts the authors' evaluation adapters read.

* ``mmrb2`` (parquet): ``pair_id``, ``prompt_text``, ``prompt_images`` (the source for edits; empty
  for T2I), ``response_a_images``, ``response_b_images``, ``chosen`` (A/B). The older JSON release:
  ``{"pairs": [...]}`` with ``pair_id``, ``prompt_content`` (a list of ``[kind, value]``),
  ``response_a`` / ``response_b`` (holding ``response_content``) and ``chosen``.
* ``genai-bench``: T2I ``prompt``, ``left_image``, ``right_image``, ``vote_type``; Edit ``source_image``,
  ``instruct_prompt``, ``left_output_image``, ``right_output_image``, ``vote_type`` (``leftvote`` /
  ``rightvote`` / anything else = tie).
* ``editreward-bench`` (parquet): ``instruction``, ``source_image``, ``candidate_1``, ``candidate_2``,
  ``ranking``.

Image cells may be bytes, ``{"bytes"|"path"}`` dicts, paths (relative to the file) or lists of those.
``--data`` may be one file or a folder of them. Labels are normalised to ``A>B``, ``B>A`` or ``A=B``;
a pair with a label that means none of these is kept with ``label=None`` and skipped by the scorer.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from ..judging.rubric import Task
from .tables import TABLE_SUFFIXES, TableError, is_empty_cell, iter_rows

FORMATS = ("mmrb2", "genai-bench", "editreward-bench")
LABELS = ("A>B", "B>A", "A=B")

_A = {"a", "left", "leftvote", "left_vote", "1", "model_1", "model1", "image a", "a>b", "response_a"}
_B = {"b", "right", "rightvote", "right_vote", "2", "model_2", "model2", "image b", "b>a", "response_b"}
_TIE = {"tie", "draw", "equal", "a=b", "b=a", "tievote", "tie_vote", "same", "both", "bothbad_vote",
        "bothgood_vote"}


def normalize_label(value: Any) -> str | None:
    """``A>B`` / ``B>A`` / ``A=B`` for the spellings the benchmarks use; None when it means none of them."""
    if is_empty_cell(value):
        return None
    text = (" ".join(str(value).lower().replace("-", "_").split()) if not isinstance(value, (int, float))
            else str(int(value)))
    if text in _A:
        return "A>B"
    if text in _B:
        return "B>A"
    if text in _TIE:
        return "A=B"
    return None


def genai_vote(value: Any) -> str | None:
    """GenAI-Bench: leftvote / rightvote; every other vote (tievote, bothbad_vote) is a tie."""
    if is_empty_cell(value):
        return None
    text = str(value).strip().lower()
    return "A>B" if text == "leftvote" else "B>A" if text == "rightvote" else "A=B"


@dataclass
class Pair:
    id: str
    task: Task
    prompt: str
    image_a: Any
    image_b: Any
    source: Any = None
    label: str | None = None      # "A>B" | "B>A" | "A=B" | None (unknown: skipped)
    base_dir: Path | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def data_files(path: str | Path) -> list[Path]:
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in TABLE_SUFFIXES and p.is_file())
        if not files:
            raise TableError(f"{path}: no {', '.join(TABLE_SUFFIXES)} files in this folder")
        return files
    if not path.is_file():
        raise TableError(f"{path} does not exist")
    return [path]


def read_benchmark(fmt: str, path: str | Path, task: Task | str | None = None) -> list[Pair]:
    """Every pair in ``path`` (a file or a folder). ``task`` forces T2I or Edit; by default it follows
    the file (a source image means an edit)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown benchmark format {fmt!r}; choose one of {', '.join(FORMATS)}")
    forced = Task(task) if task else None
    reader = {"mmrb2": _mmrb2, "genai-bench": _genai, "editreward-bench": _editreward}[fmt]
    pairs: list[Pair] = []
    seen: set[str] = set()
    for file in data_files(path):
        rows = iter_rows(file, json_list_key="pairs")
        for n, pair in enumerate(reader(rows, file)):
            if not pair.id or pair.id in seen:      # ids must be unique for the answer cache
                pair.id = f"{file.stem}:{n}"
            seen.add(pair.id)
            if forced is not None:
                pair.task = forced
            pairs.append(pair)
    return pairs


def _first(row: dict, *names: str) -> Any:
    for n in names:
        if n in row and not is_empty_cell(row[n]):
            return row[n]
    return None


def _require(row: dict, file: Path, *names: str) -> None:
    missing = [n for n in names if n not in row]
    if missing:
        raise TableError(f"{file}: no column {', '.join(missing)}; found {sorted(row)}. Is --format right?")


def _mmrb2(rows: Iterator[dict], file: Path) -> Iterator[Pair]:
    for n, row in enumerate(rows):
        if "prompt_content" in row or "response_a" in row:         # the older JSON release
            text, images = _content(row.get("prompt_content"))
            a = _content(_get(row.get("response_a"), "response_content"))[1]
            b = _content(_get(row.get("response_b"), "response_content"))[1]
            source = images or None
            yield Pair(str(row.get("pair_id", "")), Task.EDIT if source else Task.T2I, text, a, b, source,
                       normalize_label(row.get("chosen")), file.parent)
            continue
        if n == 0:
            _require(row, file, "prompt_text", "response_a_images", "response_b_images", "chosen")
        source = row.get("prompt_images")
        source = None if is_empty_cell(source) else source
        yield Pair(str(row.get("pair_id", "")), Task.EDIT if source is not None else Task.T2I,
                   str(row.get("prompt_text") or ""), row["response_a_images"], row["response_b_images"], source,
                   normalize_label(row.get("chosen")), file.parent)


def _get(value: Any, key: str) -> Any:
    return value.get(key, value) if isinstance(value, dict) else value


def _content(parts: Any) -> tuple[str, list]:
    """MMRB2 JSON content: a list of ``[kind, value]`` (or ``{"type", "content"}``) -> (text, images)."""
    texts, images = [], []
    for part in parts or []:
        if isinstance(part, dict):
            kind, value = part.get("type") or part.get("kind"), part.get("content", part.get("value"))
        elif isinstance(part, (list, tuple)) and len(part) == 2:
            kind, value = part
        else:
            kind, value = "image", part
        (texts if str(kind).lower() == "text" else images).append(value)
    return "\n".join(str(t) for t in texts), images


def _genai(rows: Iterator[dict], file: Path) -> Iterator[Pair]:
    for n, row in enumerate(rows):
        edit = "source_image" in row or "left_output_image" in row
        if n == 0:
            _require(row, file, *(("source_image", "instruct_prompt", "left_output_image", "right_output_image")
                                  if edit else ("prompt", "left_image", "right_image")), "vote_type")
        meta = {k: row[k] for k in ("left_model", "right_model") if k in row}
        rid = str(_first(row, "id", "pair_id", "index") or "")
        if edit:
            yield Pair(rid, Task.EDIT, str(row.get("instruct_prompt") or ""), row["left_output_image"],
                       row["right_output_image"], row["source_image"], genai_vote(row.get("vote_type")),
                       file.parent, meta)
        else:
            yield Pair(rid, Task.T2I, str(row.get("prompt") or ""), row["left_image"], row["right_image"], None,
                       genai_vote(row.get("vote_type")), file.parent, meta)


def _editreward(rows: Iterator[dict], file: Path) -> Iterator[Pair]:
    for n, row in enumerate(rows):
        if n == 0:
            _require(row, file, "instruction", "source_image", "candidate_1", "candidate_2", "ranking")
        meta = {k: row[k] for k in ("model_1", "model_2") if k in row}
        yield Pair(str(_first(row, "id", "pair_id") or ""), Task.EDIT, str(row.get("instruction") or ""),
                   row["candidate_1"], row["candidate_2"], row["source_image"], normalize_label(row.get("ranking")),
                   file.parent, meta)


# Published preference accuracy (%), from the paper, for the table printed beside a run.
PUBLISHED: dict[tuple[str, Task], dict[str, float]] = {
    ("mmrb2", Task.T2I): {"RationalRewards-8B": 64.2, "Qwen3-VL-8B": 59.4, "Gemini 2.5 Pro": 70.5},
    ("mmrb2", Task.EDIT): {"RationalRewards-8B": 70.3, "Qwen3-VL-8B": 61.7, "Gemini 2.5 Pro": 71.3},
    ("editreward-bench", Task.EDIT): {"RationalRewards-8B": 66.2, "Qwen3-VL-8B": 51.9, "Gemini 2.5 Pro": 71.3},
    ("genai-bench", Task.T2I): {"RationalRewards-8B": 69.8, "Qwen3-VL-8B": 55.1, "Gemini 2.5 Pro": 66.2},
    ("genai-bench", Task.EDIT): {"RationalRewards-8B": 80.1, "Qwen3-VL-8B": 50.1, "Gemini 2.5 Pro": 78.9},
}

__all__ = ["FORMATS", "LABELS", "PUBLISHED", "Pair", "data_files", "genai_vote", "normalize_label",
           "read_benchmark"]
