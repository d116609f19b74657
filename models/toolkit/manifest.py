"""Critique at scale: a manifest of (image, prompt[, source]) rows -> one JSON line per critique.

Designed for long runs on several machines without a scheduler:

* **Resumable.** Each record is one ``write`` of a whole line to a file opened for appending, so a
  killed run leaves at most one partial last line; on restart that fragment is cut off, the ids
  already written are skipped, and nothing is written twice.
* **Sharded.** ``shard=(k, n)`` keeps the rows whose id hashes (SHA-1, stable across machines and
  Python runs) to ``k`` modulo ``n``: ``n`` machines given the same manifest split it without talking
  to each other, and every row lands in exactly one shard.
* **Bad rows** (missing or unreadable image, empty prompt, an answer the server refused) are reported
  with their id, listed in ``<out>.errors.jsonl`` and skipped; a later run retries them.
* Requests go through :class:`~.dispatch.Dispatcher`: one or several servers, or an in-process critic.

For a cluster, :mod:`.ray_engine` runs the same rows through Ray Data with the functions below
(``manifest_row``, ``row_cells``, ``row_item``, ``row_where``, ``output_record``): the same records.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from PIL import Image
from tqdm.auto import tqdm

from ..backends.base import GenerationOptions
from ..critic.critic import CritiqueInputError, Item
from ..judging.critique import Critique
from .dispatch import Dispatcher, Outcome
from .outputs import RERUN, Staged, output_error
from ..judging.rubric import Task
from .tables import TableError, describe_cell, is_empty_cell, iter_rows, load_image

IMAGE_COLUMNS = ("image", "image_path")
PROMPT_COLUMNS = ("prompt", "instruction")
SOURCE_COLUMNS = ("source", "source_image")


@dataclass(frozen=True)
class ManifestRow:
    id: str
    image: Any            # a path (relative to the manifest's folder), bytes or a dict cell
    prompt: str
    source: Any = None
    position: int = 0     # 0-based row number in the manifest


def _pick(row: dict, names: Sequence[str]) -> Any:
    for n in names:
        if n in row:
            return row[n]
    return None


def read_manifest(path: str | Path) -> list[ManifestRow]:
    """Rows of a JSONL, JSON, CSV or parquet manifest. Columns: ``image`` and ``prompt`` (required),
    ``source`` (edits) and ``id`` (optional; the row number when absent). Ids must be unique."""
    path = Path(path)
    rows: list[ManifestRow] = []
    seen: dict[str, int] = {}
    for pos, raw in enumerate(iter_rows(path)):
        row = manifest_row(raw, pos, str(path))
        if row.id in seen:
            raise TableError(f"{path}: id {row.id!r} appears in rows {seen[row.id]} and {pos}; ids must be unique "
                             "(a resumed run skips the ids it has written)")
        seen[row.id] = pos
        rows.append(row)
    return rows


def manifest_row(raw: dict[str, Any], pos: int, where: str) -> ManifestRow:
    """The manifest row made of ``raw``, row ``pos`` (from 0) of the file ``where`` (both engines read rows
    this way; the first row's columns are checked)."""
    if pos == 0:
        check_columns(raw, where)
    prompt = _pick(raw, PROMPT_COLUMNS)
    return ManifestRow(row_id(raw.get("id"), pos), _pick(raw, IMAGE_COLUMNS),
                       "" if is_empty_cell(prompt) else str(prompt), _pick(raw, SOURCE_COLUMNS), pos)


def check_columns(names: Iterable[str], where: str) -> None:
    """Raise TableError naming the file when a manifest lacks its image or prompt column."""
    names = set(names)
    missing = [group[0] for group in (IMAGE_COLUMNS, PROMPT_COLUMNS) if not names.intersection(group)]
    if missing:
        raise TableError(f"{where}: no {' or '.join(repr(m) for m in missing)} column; a manifest needs "
                         f"'image' and 'prompt' (optional 'source', 'id'); found {sorted(names)}")


def row_id(value: Any, pos: int) -> str:
    """A row's id: its ``id`` cell, or its row number when that is empty."""
    return str(pos) if is_empty_cell(value) else str(value)


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` -> (K, N) with 0 <= K < N."""
    try:
        k, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard takes K/N (e.g. 0/4 … 3/4), not {text!r}") from None
    if n < 1 or not 0 <= k < n:
        raise ValueError(f"--shard {text}: K counts from 0 and must be below N (0/{max(n, 1)} … "
                         f"{max(n, 1) - 1}/{max(n, 1)})")
    return k, n


def shard_of(row_id: str, n: int) -> int:
    """Which of ``n`` shards a row id belongs to (stable across machines, Python runs and row order)."""
    return int.from_bytes(hashlib.sha1(row_id.encode("utf-8")).digest()[:8], "big") % n


def critique_record(critique: Critique, weights: str | dict[str, float] | None = "equal") -> dict[str, Any]:
    """The parsed critique as JSON: per-dimension score/state/justification plus flat ``scores`` and
    ``states`` maps (``None`` score = N/A or unreadable, the state says which)."""
    data = critique.to_dict(weights)
    data["scores"] = {d["key"]: d["score"] for d in data["dimensions"]}
    data["states"] = {d["key"]: d["status"] for d in data["dimensions"]}
    return data


class ResumableJsonl:
    """An append-only JSONL file that knows which ids it holds; a partial last line is cut off."""

    def __init__(self, path: str | Path, key: str = "id"):
        self.path, self.key = Path(path), key
        self.ids: set[str] = set()
        self.trimmed = 0   # bytes of a partial last line removed on open
        self._scan()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(self.path, "ab", buffering=0)

    def _scan(self) -> None:
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        end = data.rfind(b"\n") + 1
        if end < len(data):                  # killed mid-line: drop the fragment
            with open(self.path, "r+b") as f:
                f.truncate(end)
            self.trimmed = len(data) - end
            data = data[:end]
        for n, line in enumerate(data.splitlines(), 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                raise TableError(f"{self.path}, line {n} is not JSON: the file was edited or written by another "
                                 "tool; fix or remove that line, or write to a new --out file") from None
            if isinstance(rec, dict) and self.key in rec:
                self.ids.add(str(rec[self.key]))

    def write(self, record: dict[str, Any]) -> None:
        """Append one record as one whole line: a write cut short (disk full, file-size limit) is taken back,
        so the file always ends with a complete line and a rerun picks up after the last one."""
        line = (json.dumps(record, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")
        start = os.fstat(self._f.fileno()).st_size
        try:
            view = memoryview(line)
            while view:
                view = view[self._f.write(view):]   # unbuffered: a short write returns what it wrote
        except OSError as e:
            os.ftruncate(self._f.fileno(), start)
            raise output_error(self.path, e, f"the {len(self.ids)} records already there are complete and kept",
                               f"{RERUN} (it skips them)") from None
        self.ids.add(str(record[self.key]))

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> "ResumableJsonl":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass
class ManifestReport:
    total: int = 0          # rows in the manifest
    in_shard: int = 0       # rows this shard owns
    already_done: int = 0   # skipped: already in the output
    written: int = 0
    failed: list[dict[str, str]] = field(default_factory=list)   # {"id", "error"}

    @property
    def complete(self) -> bool:
        return not self.failed and self.already_done + self.written == self.in_shard


def row_cells(row: ManifestRow, task: Task | None) -> tuple[Task, Any, Any]:
    """The row's task (``task``, or edit when the row has a source) and its image and source cells (the
    source is None for T2I); raises CritiqueInputError for a row that lacks one."""
    row_task = task or (Task.EDIT if not is_empty_cell(row.source) else Task.T2I)
    if row_task is Task.EDIT and is_empty_cell(row.source):
        raise CritiqueInputError("task is edit but the row has no 'source' image")
    if is_empty_cell(row.image):
        raise CritiqueInputError("the row has no 'image'")
    return row_task, row.image, (row.source if row_task is Task.EDIT else None)


def row_item(task: Task, prompt: str, image: Image.Image, source: Image.Image | None) -> Item:
    """The pointwise item of a manifest row (the source first for an edit)."""
    return Item(task, "pointwise", prompt, (image,) if task is Task.T2I else (source, image))


def row_where(row: ManifestRow) -> dict[str, Any]:
    """Where a record came from, as every manifest record starts: id, image, prompt, source."""
    return {"id": row.id, "image": describe_cell(row.image), "prompt": row.prompt, "source": describe_cell(row.source)}


def _row_item(row: ManifestRow, base_dir: Path, task: Task | None) -> Callable[[], Item]:
    def build() -> Item:
        row_task, image, source = row_cells(row, task)
        image = load_image(image, base_dir)     # the image first: its error is the one reported
        return row_item(row_task, row.prompt, image, None if source is None else load_image(source, base_dir))
    return build


def critique_manifest(manifest: str | Path, out: str | Path, dispatcher: Dispatcher, *,
                      options: GenerationOptions | None = None, shard: tuple[int, int] = (0, 1),
                      task: Task | str | None = None, weights: str | dict[str, float] | None = "equal",
                      progress: bool = True, log: Callable[[str], None] | None = None) -> ManifestReport:
    """Critique every row of ``manifest`` owned by ``shard`` that ``out`` does not hold yet."""
    manifest = Path(manifest)
    task = Task(task) if task else None
    say = log or (lambda msg: print(msg, file=sys.stderr))
    rows = read_manifest(manifest)
    k, n = shard
    mine = [r for r in rows if shard_of(r.id, n) == k]
    report = ManifestReport(total=len(rows), in_shard=len(mine))
    errors_path = Path(str(out) + ".errors.jsonl")
    with ResumableJsonl(out) as sink:
        if sink.trimmed:
            say(f"{out}: removed a partial last line ({sink.trimmed} bytes) left by an interrupted run")
        todo = [r for r in mine if r.id not in sink.ids]
        report.already_done = len(mine) - len(todo)
        base = manifest.parent
        jobs = [_row_item(r, base, task) for r in todo]
        with tqdm(total=len(mine), initial=report.already_done, unit="image", desc="critique", dynamic_ncols=True,
                  disable=not progress) as bar:
            for outcome in dispatcher.run(jobs, options):
                row = todo[outcome.index]
                if not outcome.ok:
                    report.failed.append({"id": row.id, "error": outcome.error_text})
                    say(f"row {row.id!r} skipped: {outcome.error_text}")
                else:
                    sink.write(_record(row, outcome, weights))
                    report.written += 1
                bar.update(1)
    if report.failed:
        with Staged(f"the {len(sink.ids)} critiques in {out} are complete and kept") as stage:
            stage.write_text(errors_path, "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in report.failed))
    elif errors_path.exists():
        os.remove(errors_path)
    return report


def _record(row: ManifestRow, outcome: Outcome, weights) -> dict[str, Any]:
    return output_record(outcome, weights, **row_where(row))


def output_record(outcome: Outcome, weights, **where: Any) -> dict[str, Any]:
    """One JSON line of ``rationalrewards critique`` (with or without a manifest, in-process or served):
    where the item came from, the critic's name, and the parsed critique with its record."""
    return {**where, "model": outcome.critic.name} | critique_record(outcome.parsed(), weights)


def read_ids(paths: Iterable[str | Path]) -> list[str]:
    """Every ``id`` in the given JSONL outputs, in file order (with repeats: a check for duplicates)."""
    ids = []
    for p in paths:
        with open(p, encoding="utf-8") as f:
            ids.extend(str(json.loads(line)["id"]) for line in f if line.strip())
    return ids


__all__ = ["ManifestReport", "ManifestRow", "ResumableJsonl", "check_columns", "critique_manifest", "critique_record",
           "manifest_row", "output_record", "parse_shard", "read_ids", "read_manifest", "row_cells", "row_id",
           "row_item", "row_where", "shard_of"]
