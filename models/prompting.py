"""Render template files into a backend-neutral chat message.

A message is a list of parts, each ``("text", str)`` or ``("image", PIL.Image)``,
so every backend (transformers, OpenAI-compatible server) builds its own
request from the same structure.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from PIL import Image

from .rubric import Task

TEMPLATE_DIR = Path(__file__).parent / "templates"
IMAGE_MARKER = "<image>"
REQUEST_FIELD = "{request}"


@dataclass(frozen=True)
class ChatRequest:
    """One user turn: text and images in order. ``system`` is optional."""
    parts: tuple[tuple[str, object], ...]
    system: str | None = None

    @property
    def images(self) -> list[Image.Image]:
        return [p for kind, p in self.parts if kind == "image"]

    @property
    def text(self) -> str:
        return "".join(p for kind, p in self.parts if kind == "text")


def template_name(task: Task | str, mode: str) -> str:
    if mode not in ("pointwise", "pairwise"):
        raise ValueError(f"mode must be 'pointwise' or 'pairwise', not {mode!r}")
    return f"{Task(task).value}_{mode}"


@lru_cache(maxsize=64)
def _read_cached(path: str, mtime_ns: int) -> str:
    return Path(path).read_text(encoding="utf-8")


def _read(path: str) -> str:
    """File text, re-read when the file changes (users edit templates while ComfyUI runs)."""
    return _read_cached(path, Path(path).stat().st_mtime_ns)


def load_template(name: str, directory: str | Path | None = None) -> str:
    """Read a template by name; a file of that name in ``directory`` overrides the shipped one."""
    for folder in ([Path(directory)] if directory else []) + [TEMPLATE_DIR]:
        path = folder / f"{name}.txt"
        if path.is_file():
            return _read(str(path))
    raise FileNotFoundError(f"no template {name!r} in {directory or ''} {TEMPLATE_DIR}")


def render(template: str, request: str, images: list[Image.Image],
           fields: dict[str, str] | None = None) -> ChatRequest:
    """Fill ``{request}`` (and any other ``{name}`` of ``fields``) in one pass -- filled-in text is never
    re-scanned -- and put the images where the ``<image>`` markers are."""
    values = {REQUEST_FIELD[1:-1]: request, **(fields or {})}
    field = re.compile(r"\{(" + "|".join(map(re.escape, values)) + r")\}")
    pieces = template.split(IMAGE_MARKER)
    if len(pieces) - 1 != len(images):
        raise ValueError(f"template has {len(pieces) - 1} image markers but {len(images)} images were given")
    parts: list[tuple[str, object]] = []
    for i, piece in enumerate(pieces):
        text = field.sub(lambda m: values[m.group(1)], piece)
        if text:
            parts.append(("text", text))
        if i < len(images):
            parts.append(("image", images[i]))
    return ChatRequest(parts=tuple(parts))
