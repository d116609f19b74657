"""Read rows from JSONL, JSON, CSV or parquet files, and images from table cells.

Manifests and benchmark files come in these shapes; parquet needs ``pyarrow`` (the ``toolkit``
extra), which is imported only when a parquet file is read. Image cells are what data-set tools
write: a path (relative to the file's folder), raw bytes, a ``data:image/...;base64,`` URI (how a
JSON file embeds an image), a dict with ``bytes`` and/or ``path`` (Hugging Face ``datasets``' Image
feature), or a list of those (the first is used). The Ray engine reads the same rows from any
filesystem pyarrow opens (:func:`rows_from_stream`) and the same cells (:func:`cell_parts`).
"""
from __future__ import annotations

import base64
import binascii
import csv
import io
import json
import posixpath
from pathlib import Path
from typing import Any, BinaryIO, Iterator

from PIL import Image, UnidentifiedImageError

from ..critic.images import ImageError
from ..errors import RationalRewardsError

TABLE_SUFFIXES = (".jsonl", ".ndjson", ".json", ".csv", ".parquet")


class TableError(RationalRewardsError, ValueError):
    """A file that cannot be read as rows; the message names the file and what to change."""


def require_pyarrow_fs(uri: str):
    try:
        import pyarrow.fs as fs_module
    except ImportError:
        raise TableError(f"reading {uri} needs pyarrow: pip install \"pyarrow>=14\" (or, in the pack's folder, "
                         "pip install -e \".[toolkit]\")") from None
    return fs_module


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
    with path.open("rb") as f:
        yield from rows_from_stream(f, str(path), json_list_key=json_list_key)


def rows_from_stream(stream: BinaryIO, name: str, *, json_list_key: str | None = None) -> Iterator[dict[str, Any]]:
    """Rows of an open binary file called ``name`` (its suffix says the format); parquet needs a
    seekable file. What :func:`iter_rows` reads, from a local file or any pyarrow filesystem."""
    suffix = Path(name).suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        text = io.TextIOWrapper(stream, encoding="utf-8")
        for n, line in enumerate(text, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise TableError(f"{name}, line {n}: not JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise TableError(f"{name}, line {n}: expected a JSON object per line")
            yield row
    elif suffix == ".json":
        try:
            data = json.loads(stream.read().decode("utf-8"))
        except json.JSONDecodeError as e:
            raise TableError(f"{name}: not JSON ({e.msg} at line {e.lineno})") from None
        if isinstance(data, dict) and json_list_key and isinstance(data.get(json_list_key), list):
            data = data[json_list_key]
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise TableError(f"{name}: expected a JSON list of objects"
                             + (f" (or an object with a {json_list_key!r} list)" if json_list_key else ""))
        yield from data
    elif suffix == ".csv":
        text = io.TextIOWrapper(stream, encoding="utf-8", newline="")
        yield from csv.DictReader(text)
    elif suffix == ".parquet":
        pq = require_pyarrow()
        for batch in pq.ParquetFile(stream).iter_batches(batch_size=256):
            yield from batch.to_pylist()
    else:
        raise TableError(f"{name}: unknown table format {suffix!r}; use one of {', '.join(TABLE_SUFFIXES)}")


def is_empty_cell(cell: Any) -> bool:
    if cell is None or (isinstance(cell, float) and cell != cell):
        return True
    if isinstance(cell, (str, bytes, list, tuple)) and len(cell) == 0:
        return True
    return isinstance(cell, dict) and not cell.get("bytes") and not cell.get("path")


def cell_parts(cell: Any) -> tuple[bytes | None, str | None]:
    """What an image cell holds: (embedded image file bytes, path or URI); the bytes are read first.
    Raises ImageError for a cell that holds neither."""
    if isinstance(cell, (list, tuple)):
        if not cell:
            raise ImageError("the image cell is an empty list")
        return cell_parts(cell[0])
    if isinstance(cell, dict):
        data, path = cell.get("bytes"), cell.get("path")
        if not data and not path:
            raise ImageError("the image cell is a dict without 'bytes' or 'path'")
        if isinstance(data, str):
            data = _base64(data)
        return (bytes(data) if data else None), (str(path) if path else None)
    if isinstance(cell, (bytes, bytearray, memoryview)):
        return bytes(cell), None
    if isinstance(cell, str) and cell.strip():
        text = cell.strip()
        if text.startswith("data:"):
            head, _, payload = text.partition(",")
            if not head.endswith(";base64"):
                raise ImageError("an image data URI must be base64: data:image/png;base64,...")
            return _base64(payload), None
        return None, text
    raise ImageError(f"no image in the cell (got {type(cell).__name__})")


def _base64(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ImageError("the image cell holds text that is neither a path nor base64 image data") from None


def decode_image(data: bytes, name: str = "the embedded image") -> Image.Image:
    """A fully decoded PIL image from an image file's bytes; ``name`` (the file) is what an error names."""
    try:
        img = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise UnidentifiedImageError(f"cannot identify image file {name!r}") from None
    try:
        img.load()
    except OSError as e:   # a file cut short: say which one
        raise OSError(f"{name} is not a readable image ({e})") from None
    return img


class ImageFiles:
    """Reads the image files that table cells name: paths relative to the table's folder ``base``, absolute
    paths, and URIs of any filesystem pyarrow opens (``s3://``, ``gs://``, ``hdfs://``, ``file://``). With
    ``filesystem`` (a pyarrow filesystem), ``base`` and plain paths are on it. Picklable: the Ray engine
    sends one to its tasks."""

    def __init__(self, base: str | Path | None = None, filesystem: Any = None):
        self.base, self.filesystem = (None if base is None else str(base)), filesystem
        self._roots: dict[str, tuple[Any, str | None]] = {}

    def read(self, path: str) -> tuple[bytes, str]:
        """(the file's bytes, its name as messages show it); FileNotFoundError when it does not exist."""
        if "://" in path:
            fs, where = self._from_uri(path)
            return self._read(fs, where, path), path
        if self.filesystem is not None:
            where = path if path.startswith("/") or not self.base else posixpath.join(self.base, path)
            return self._read(self.filesystem, where, where), where
        p = Path(path).expanduser()
        if not p.is_absolute() and self.base is not None:
            p = Path(self.base) / p
        if not p.is_file():
            raise FileNotFoundError(f"image file {p} does not exist")
        return p.read_bytes(), str(p)

    def _from_uri(self, uri: str) -> tuple[Any, str]:
        """One filesystem per scheme://host, made once (making an object-store client is not free)."""
        fs_module = require_pyarrow_fs(uri)
        key = "/".join(uri.split("/", 3)[:3])
        tail = uri[len(key):]
        if key not in self._roots:
            fs, where = fs_module.FileSystem.from_uri(uri)
            self._roots[key] = fs, (where[:len(where) - len(tail)] if where.endswith(tail) else None)
        fs, prefix = self._roots[key]
        return fs, (prefix + tail if prefix is not None else fs_module.FileSystem.from_uri(uri)[1])

    @staticmethod
    def _read(fs: Any, where: str, shown: str) -> bytes:
        from pyarrow.fs import FileType
        if fs.get_file_info(where).type != FileType.File:
            raise FileNotFoundError(f"image file {shown} does not exist")
        with fs.open_input_file(where) as f:
            return f.read()


def load_image(cell: Any, base_dir: str | Path | None = None) -> Image.Image:
    """A PIL image (fully decoded) from a table cell; raises OSError or ImageError saying what was wrong."""
    if isinstance(cell, Image.Image):
        return cell
    data, path = cell_parts(cell)
    if data is not None:
        return decode_image(data)
    return decode_image(*ImageFiles(base_dir).read(path))


def describe_cell(cell: Any) -> str | None:
    """What to write in a record about an image cell: its path, or ``<bytes>`` for an embedded image."""
    if is_empty_cell(cell):
        return None
    try:
        _, path = cell_parts(cell)
    except ImageError:
        return None
    return path or "<bytes>"


__all__ = ["ImageFiles", "TABLE_SUFFIXES", "TableError", "cell_parts", "decode_image", "describe_cell", "is_empty_cell",
           "iter_rows", "load_image", "require_pyarrow", "require_pyarrow_fs", "rows_from_stream"]
