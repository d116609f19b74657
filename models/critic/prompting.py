"""Template files: find them (user folders first), check them, render them into a chat request.

A template file is plain UTF-8 text, one file per (task, mode): ``t2i_pointwise.txt``,
``edit_pointwise.txt``, ``t2i_pairwise.txt``, ``edit_pairwise.txt`` (plus the defect-phrase
follow-ups). The format:

* A line that is exactly ``[system]`` starts the system message; a line that is exactly ``[user]``
  starts the user message. Each may appear once, system first. A file without either marker is all
  user message (no system message). Blank lines around a section are dropped; everything else,
  Markdown headers included, is sent as written.
* ``{request}`` (in the user message) is replaced by the prompt or editing instruction, verbatim.
* Each ``<image>`` marker (in the user message) is where the next image goes, in order:
  T2I pointwise 1 (the generated image), Edit pointwise 2 (source, edited), T2I pairwise 2 (A, B),
  Edit pairwise 3 (source, A, B).

Folders are searched in order and the first file of the right name wins; the pack's own
``templates/`` folder comes last, so a user can paste a model card's exact wording into a file of
their own and keep it across pack updates. A file that breaks the format is an error naming the file.

A message is a list of parts, each ``("text", str)`` or ``("image", PIL.Image)``, so every backend
(transformers, OpenAI-compatible server) builds its own request from the same structure; the system
message travels beside it and every backend sends it with the ``system`` role.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Sequence, Union

from PIL import Image

from ..judging.rubric import Task
from ..errors import RationalRewardsError

TEMPLATE_DIR = Path(__file__).parent / "templates"
IMAGE_MARKER = "<image>"
REQUEST_FIELD = "{request}"
SYSTEM_MARKER, USER_MARKER = "[system]", "[user]"
# How many images each critique template places (the critic passes exactly these).
IMAGE_COUNTS = {"t2i_pointwise": 1, "edit_pointwise": 2, "t2i_pairwise": 2, "edit_pairwise": 3,
                "defect_phrases": 1, "defect_phrases_edit": 2}
_SECTION_RE = re.compile(r"^\[(system|user)\][ \t]*$", re.MULTILINE)

TemplateDirs = Union[str, Path, Sequence[Union[str, Path]], None]


class TemplateError(RationalRewardsError, ValueError):
    """A template file that breaks the format; the message names the file and the fix."""


@dataclass(frozen=True)
class ChatRequest:
    """One user turn: text and images in order, and the system message (None: none is sent)."""
    parts: tuple[tuple[str, object], ...]
    system: str | None = None

    @property
    def images(self) -> list[Image.Image]:
        return [p for kind, p in self.parts if kind == "image"]

    @property
    def text(self) -> str:
        return "".join(p for kind, p in self.parts if kind == "text")


@dataclass(frozen=True)
class Template:
    """A parsed template file: its system and user parts, where it came from, and a short content hash."""
    name: str
    user: str
    system: str | None = None
    path: str = ""            # the file it was read from ("" for a template built from a string)
    builtin: bool = True      # read from the pack's own templates/ folder
    digest: str = ""          # first 12 hex digits of the file's SHA-256

    def info(self) -> dict[str, object]:
        """What a critique records about the template that produced it."""
        return {"name": self.name, "hash": self.digest, "source": "built-in" if self.builtin else self.path}

    def __str__(self) -> str:
        return f"{self.name} ({'built-in' if self.builtin else self.path}, {self.digest})"


def template_name(task: Task | str, mode: str) -> str:
    if mode not in ("pointwise", "pairwise"):
        raise ValueError(f"mode must be 'pointwise' or 'pairwise', not {mode!r}")
    return f"{Task(task).value}_{mode}"


def _dirs(directories: TemplateDirs) -> list[Path]:
    if directories is None:
        return []
    if isinstance(directories, (str, Path)):
        directories = [directories]
    return [Path(d) for d in directories if d]


@lru_cache(maxsize=64)
def _read_cached(path: str, mtime_ns: int, size: int) -> str:
    return Path(path).read_text(encoding="utf-8")


def _read(path: Path) -> str:
    """File text, re-read when the file changes (users edit templates while ComfyUI runs)."""
    st = path.stat()
    try:
        return _read_cached(str(path), st.st_mtime_ns, st.st_size)
    except UnicodeDecodeError as e:
        raise TemplateError(f"template file {path} is not UTF-8 text ({e.reason} at byte {e.start}); "
                            "save it as UTF-8") from None


def find_template_file(name: str, directories: TemplateDirs = None) -> Path:
    """The file ``<name>.txt`` from the first folder that has one; the pack's folder is searched last."""
    searched = _dirs(directories) + [TEMPLATE_DIR]
    for folder in searched:
        path = folder / f"{name}.txt"
        if path.is_file():
            return path
    raise FileNotFoundError(f"no template {name}.txt in {', '.join(str(f) for f in searched)}")


def load_template(name: str, directory: TemplateDirs = None) -> str:
    """The raw text of template ``name`` (see :func:`find_template_file` for the search order)."""
    return _read(find_template_file(name, directory))


def parse_template(text: str, name: str = "", path: str = "") -> Template:
    """Split a template's text into system and user parts and check it. ``path`` names it in errors."""
    where = f"template file {path}" if path else f"template {name or '(text)'}"
    pieces = _SECTION_RE.split(text)
    sections: dict[str, str] = {}
    head = pieces[0]
    if len(pieces) == 1:
        sections["user"] = head
    else:
        if head.strip():
            raise TemplateError(f"{where}: text before the first [system]/[user] line; put it inside a section")
        order = []
        for kind, body in zip(pieces[1::2], pieces[2::2]):
            if kind in sections:
                raise TemplateError(f"{where}: the [{kind}] section appears twice; keep one")
            sections[kind] = body
            order.append(kind)
        if order == ["user", "system"]:
            raise TemplateError(f"{where}: [system] must come before [user]")
        if "user" not in sections:
            raise TemplateError(f"{where}: has a [system] section but no [user] section; the user message "
                                f"(with {REQUEST_FIELD} and the {IMAGE_MARKER} markers) goes after a line [user]")
    user = sections["user"].strip("\n")
    system = sections.get("system", "").strip("\n").strip() or None
    if REQUEST_FIELD not in user:
        raise TemplateError(f"{where}: the user message has no {REQUEST_FIELD}; put {REQUEST_FIELD} where the "
                            "prompt or editing instruction goes")
    if system is not None and (IMAGE_MARKER in system or REQUEST_FIELD in system):
        raise TemplateError(f"{where}: {IMAGE_MARKER} and {REQUEST_FIELD} belong in the [user] section, "
                            "not in [system]")
    expected = IMAGE_COUNTS.get(name)
    found = user.count(IMAGE_MARKER)
    if expected is not None and found != expected:
        raise TemplateError(f"{where}: has {found} {IMAGE_MARKER} markers but {name} places {expected} "
                            f"image{'s' if expected != 1 else ''} ({_image_roles(name)}); put one "
                            f"{IMAGE_MARKER} where each image goes")
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]
    builtin = bool(path) and Path(path).parent.resolve() == TEMPLATE_DIR.resolve()
    return Template(name=name, user=user, system=system, path=path, builtin=builtin or not path, digest=digest)


def _image_roles(name: str) -> str:
    return {"t2i_pointwise": "the generated image", "edit_pointwise": "source, then edited",
            "t2i_pairwise": "image A, then image B", "edit_pairwise": "source, image A, image B",
            "defect_phrases": "the judged image", "defect_phrases_edit": "source, then edited"}.get(name, "")


def get_template(name: str, directories: TemplateDirs = None) -> Template:
    """Find, read and check template ``name``; user folders are read before the pack's own."""
    path = find_template_file(name, directories)
    return _parsed(_read(path), name, str(path))


@lru_cache(maxsize=64)
def _parsed(text: str, name: str, path: str) -> Template:
    """:func:`parse_template` once per file content (every critique asks for its template)."""
    return parse_template(text, name, path)


def get_addendum(name: str, directories: TemplateDirs = None) -> Template:
    """An addendum template (text appended after a critique template, e.g. PARROT's): read like any template,
    without the critique templates' checks (it has no ``{request}`` and no images)."""
    path = find_template_file(name, directories)
    text = _read(path)
    builtin = path.parent.resolve() == TEMPLATE_DIR.resolve()
    return replace(as_template(text), name=name, path=str(path), builtin=builtin,
                   digest=hashlib.sha256(text.encode("utf-8")).hexdigest()[:12])


def user_templates(directories: TemplateDirs) -> list[Path]:
    """Template files in the user folders that override a built-in one (for messages and checks)."""
    return [f for d in _dirs(directories) for f in sorted(d.glob("*.txt")) if f.stem in IMAGE_COUNTS]


def check_templates(directories: TemplateDirs) -> list[Template]:
    """Parse every user template in ``directories`` now, so a broken file fails when the critic loads."""
    return [parse_template(_read(f), f.stem, str(f)) for f in user_templates(directories)]


def render(template: Template | str, request: str, images: list[Image.Image],
           fields: dict[str, str] | None = None) -> ChatRequest:
    """Fill ``{request}`` (and any other ``{name}`` of ``fields``) in one pass -- filled-in text is never
    re-scanned -- and put the images where the ``<image>`` markers are."""
    tpl = template if isinstance(template, Template) else as_template(template)
    values = {REQUEST_FIELD[1:-1]: request, **(fields or {})}
    field = re.compile(r"\{(" + "|".join(map(re.escape, values)) + r")\}")
    pieces = tpl.user.split(IMAGE_MARKER)
    if len(pieces) - 1 != len(images):
        where = f" {tpl.path}" if tpl.path else ""
        raise ValueError(f"template{where} has {len(pieces) - 1} image markers but {len(images)} images "
                         "were given")
    parts: list[tuple[str, object]] = []
    for i, piece in enumerate(pieces):
        text = field.sub(lambda m: values[m.group(1)], piece)
        if text:
            parts.append(("text", text))
        if i < len(images):
            parts.append(("image", images[i]))
    return ChatRequest(parts=tuple(parts), system=tpl.system)


def as_template(text: str) -> Template:
    """A template given as a string (tests, callers with their own text): sections are split, but the
    file checks do not apply."""
    pieces = _SECTION_RE.split(text)
    if len(pieces) == 1:
        return Template(name="", user=text)
    sections = dict(zip(pieces[1::2], pieces[2::2]))
    return Template(name="", user=sections.get("user", "").strip("\n"),
                    system=sections.get("system", "").strip() or None)
