"""The critic: templates in, backend call, parsed critiques out.

Everything a node or the CLI needs goes through :class:`Critic`; the backend
only turns chat requests into text.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

from PIL import Image

from ..backends.base import Backend, GenerationOptions, ProgressFn, StopFn
from ..judging.critique import Critique, PairwiseCritique
from .images import prepare
from ..judging.parser import parse_critique, parse_pairwise
from .progress import AnswerProgress, headers_in
from .prompting import ChatRequest, Template, TemplateDirs, _dirs, get_template, render, template_name
from ..judging.rubric import Task
from .script import AnswerScript


class CritiqueInputError(ValueError):
    """A request the critic cannot judge (empty prompt, mismatched images)."""


@dataclass(frozen=True)
class Item:
    """One thing to judge: pointwise (one image, plus a source for Edit) or pairwise (two)."""
    task: Task
    mode: str                      # "pointwise" | "pairwise"
    request: str
    images: tuple[Image.Image, ...]


@dataclass
class Critic:
    backend: Backend
    max_pixels: int | None = None          # None: the checkpoint's processor decides
    template_dir: TemplateDirs = None      # folder(s) read before the pack's own templates, in order
    script: AnswerScript | None = None     # scripted answers (replay/testing seam)
    name: str = ""
    max_pixels_source: str = ""            # why max_pixels has its value (shown with it)

    def with_script(self, script: AnswerScript | None) -> "Critic":
        """A critic sharing this backend whose answers follow ``script`` where it matches."""
        return replace(self, script=script)

    # -- building blocks ----------------------------------------------------------------------------
    def template_dirs(self) -> list[Path]:
        """The user template folders, in the order they are read (the pack's own folder comes after)."""
        return _dirs(self.template_dir)

    def template(self, task: Task, mode: str) -> Template:
        return get_template(template_name(task, mode), self.template_dir)

    def image_size(self) -> dict[str, object]:
        """What a critique records about the image size the critic saw."""
        return {"max_pixels": self.max_pixels,
                "source": self.max_pixels_source or ("set by the caller" if self.max_pixels
                                                     else "the processor decides")}

    def build(self, item: Item) -> ChatRequest:
        if not item.request or not item.request.strip():
            what = "instruction" if item.task is Task.EDIT else "prompt"
            raise CritiqueInputError(f"the {what} is empty: the critic judges an image against its {what}, "
                                     f"so type the {what} that produced the image")
        names = _image_names(item)
        images = [prepare(img, self.max_pixels, what) for img, what in zip(item.images, names)]
        return render(self.template(item.task, item.mode), item.request.strip(), images)

    def run(self, items: Sequence[Item], options: GenerationOptions | None = None, *,
            progress: ProgressFn | None = None, should_stop: StopFn | None = None,
            answer_progress: Callable[[float], None] | None = None) -> list[str]:
        """Raw answers for ``items`` (validated and rendered first, so bad input fails before the model runs).

        ``progress`` counts tokens against the budget; ``answer_progress`` gets the fraction of the
        answers written (by their sections, see models/progress.py), which reaches 1.0 when they end."""
        options = options or GenerationOptions()
        requests = [self.build(it) for it in items]
        forced = [self.script.answer_for(it.task, it.mode, it.request) if self.script else None
                  for it in items]
        extra = {}
        tracker = None
        if answer_progress is not None:
            tracker = AnswerProgress([headers_in(r.text) for r in requests], answer_progress)
            extra["stream"] = tracker
        answers = self.backend.generate(requests, options, forced=forced, progress=progress,
                                        should_stop=should_stop, **extra)
        if tracker is not None:
            tracker.finish()
        return answers

    # -- what users call ------------------------------------------------------------------------------
    def critique(self, images: Sequence[Image.Image], prompts: str | Sequence[str],
                 options: GenerationOptions | None = None, *, sources: Sequence[Image.Image] | None = None,
                 progress: ProgressFn | None = None, should_stop: StopFn | None = None,
                 answer_progress: Callable[[float], None] | None = None) -> list[Critique]:
        """Pointwise critiques, one per image. With ``sources`` the task is Edit (one source per image)."""
        prompts = _per_item(prompts, len(images), "prompts")
        task = Task.EDIT if sources is not None else Task.T2I
        if sources is not None and len(sources) != len(images):
            raise CritiqueInputError(f"{len(sources)} source images for {len(images)} edited images")
        items = [Item(task, "pointwise", p, (img,) if sources is None else (sources[i], img))
                 for i, (img, p) in enumerate(zip(images, prompts))]
        answers = self.run(items, options, progress=progress, should_stop=should_stop,
                           answer_progress=answer_progress)
        record = {"template": self.template(task, "pointwise").info(), "image_size": self.image_size()}
        return [_recorded(parse_critique(a, task), record) for a in answers]

    def compare(self, image_a: Image.Image, image_b: Image.Image, prompt: str,
                options: GenerationOptions | None = None, *, source: Image.Image | None = None,
                progress: ProgressFn | None = None, should_stop: StopFn | None = None,
                answer_progress: Callable[[float], None] | None = None) -> PairwiseCritique:
        task = Task.EDIT if source is not None else Task.T2I
        images = (image_a, image_b) if source is None else (source, image_a, image_b)
        answer = self.run([Item(task, "pairwise", prompt, images)], options, progress=progress,
                          should_stop=should_stop, answer_progress=answer_progress)[0]
        record = {"template": self.template(task, "pairwise").info(), "image_size": self.image_size()}
        return _recorded(parse_pairwise(answer, task), record)


def _recorded(result, record: dict):
    """Attach what produced a parsed answer (template name and hash, image size) to it."""
    result.record = dict(record)
    return result


def _image_names(item: Item) -> list[str]:
    if item.mode == "pairwise":
        return (["source image"] if item.task is Task.EDIT else []) + ["image A", "image B"]
    return ["source image", "edited image"] if item.task is Task.EDIT else ["image"]


def _per_item(values: str | Sequence[str], n: int, what: str) -> list[str]:
    if isinstance(values, str):
        return [values] * n
    values = list(values)
    if len(values) == 1:
        return values * n
    if len(values) != n:
        raise CritiqueInputError(f"{len(values)} {what} for {n} images; give one, or one per image")
    return values
