"""Read rows from JSONL, JSON, CSV or parquet files, and images from table cells.

Manifests and benchmark files come in these shapes; parquet needs ``pyarrow`` (the ``toolkit``
extra), which is imported only when a parquet file is read. Image cells are what data-set tools
write: a path (relative to the file's folder), raw bytes, a dict with ``bytes`` and/or ``path``
(Hugging Face ``datasets``' Image feature), or a list of those (the first is used).
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, Iterator

from PIL import Image

from ..critic.images import ImageError
from ..errors import RationalRewardsError

TABLE_SUFFIXES = (".jsonl", ".ndjson", ".json", ".csv", ".parquet")


class TableError(RationalRewardsError, ValueError):
    """A file that cannot be read as rows; the message names the file and what to change."""


def require_pyarrow():
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise TableError("reading parquet files needs pyarrow: pip install \"pyarrow>=14\" (or, in the pack's "
                         "folder, pip install -e \".[toolkit]\")") from None
    return pq


def iter_rows(path: str | Path, *, json_list_key: str | None = None) -> Iterator[dict[str, Any]]:
    """Rows of ``path`` as dicts, by suffix. A JSON file holds a list of objects (or an object whose
    ``json_list_key`` is that list)."""
    path = Path(path)
    if not path.is_file():
        raise TableError(f"{path} does not exist (or is not a file)")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        with path.open(encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise TableError(f"{path}, line {n}: not JSON ({e.msg})") from None
                if not isinstance(row, dict):
                    raise TableError(f"{path}, line {n}: expected a JSON object per line")
                yield row
    elif suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise TableError(f"{path}: not JSON ({e.msg} at line {e.lineno})") from None
        if isinstance(data, dict) and json_list_key and isinstance(data.get(json_list_key), list):
            data = data[json_list_key]
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise TableError(f"{path}: expected a JSON list of objects"
                             + (f" (or an object with a {json_list_key!r} list)" if json_list_key else ""))
        yield from data
    elif suffix == ".csv":
        with path.open(encoding="utf-8", newline="") as f:
            yield from csv.DictReader(f)
    elif suffix == ".parquet":
        pq = require_pyarrow()
        for batch in pq.ParquetFile(path).iter_batches(batch_size=256):
            yield from batch.to_pylist()
    else:
        raise TableError(f"{path}: unknown table format {suffix!r}; use one of {', '.join(TABLE_SUFFIXES)}")


def is_empty_cell(cell: Any) -> bool:
    if cell is None or (isinstance(cell, float) and cell != cell):
        return True
    if isinstance(cell, (str, bytes, list, tuple)) and len(cell) == 0:
        return True
    return isinstance(cell, dict) and not cell.get("bytes") and not cell.get("path")


def load_image(cell: Any, base_dir: str | Path | None = None) -> Image.Image:
    """A PIL image (fully decoded) from a table cell; raises OSError or ImageError saying what was wrong."""
    if isinstance(cell, Image.Image):
        return cell
    if isinstance(cell, (list, tuple)):
        if not cell:
            raise ImageError("the image cell is an empty list")
        return load_image(cell[0], base_dir)
    if isinstance(cell, dict):
        if cell.get("bytes"):
            return load_image(bytes(cell["bytes"]), base_dir)
        if cell.get("path"):
            return load_image(str(cell["path"]), base_dir)
        raise ImageError("the image cell is a dict without 'bytes' or 'path'")
    if isinstance(cell, (bytes, bytearray, memoryview)):
        img = Image.open(io.BytesIO(bytes(cell)))
        img.load()
        return img
    if isinstance(cell, str) and cell.strip():
        p = Path(cell.strip()).expanduser()
        if not p.is_absolute() and base_dir is not None:
            p = Path(base_dir) / p
        if not p.is_file():
            raise FileNotFoundError(f"image file {p} does not exist")
        try:
            with Image.open(p) as img:
                img.load()
                return img.copy()
        except (OSError, SyntaxError, ValueError) as e:   # truncated, not an image, corrupt chunks
            raise ImageError(f"{p} is not a readable image ({type(e).__name__}: {e})") from None
    raise ImageError(f"no image in the cell (got {type(cell).__name__})")


def describe_cell(cell: Any) -> str | None:
    """What to write in a record about an image cell: its path, or ``<bytes>`` for an embedded image."""
    if is_empty_cell(cell):
        return None
    if isinstance(cell, (list, tuple)):
        return describe_cell(cell[0])
    if isinstance(cell, dict):
        return str(cell["path"]) if cell.get("path") else "<bytes>"
    return str(cell) if isinstance(cell, str) else "<bytes>"


__all__ = ["TABLE_SUFFIXES", "TableError", "describe_cell", "is_empty_cell", "iter_rows", "load_image",
           "require_pyarrow"]
