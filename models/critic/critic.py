"""The critic: the one way from a thing to judge to a backend and back.

Every caller -- the nodes, the dispatcher, PARROT, the grounding follow-up, the tournament, the CLI --
turns its :class:`Item` into a :class:`Request` with :meth:`Critic.prepare` (validated input, sized
images, the rendered template, any scripted answer, and the record of template and image size), sends
requests through :meth:`Critic.answer` (or a concurrent backend's ``complete``), and reads answers with
:meth:`Critic.parse`. So a scripted answer, a user template or ``max_pixels`` applies the same way on
every path, and every result carries the same record.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

from ..backends.base import Backend, GenerationOptions, ProgressFn, StopFn
from ..errors import RationalRewardsError
from ..judging.critique import Critique, PairwiseCritique
from ..judging.parser import parse_critique, parse_pairwise
from ..judging.rubric import Task
from .images import ImageInput
from .images import prepare as prepare_image
from .progress import AnswerProgress, headers_in
from .prompting import ChatRequest, Template, TemplateDirs, _dirs, get_addendum, get_template, render, template_name
from .script import CRITIQUE_MODES, MODES, AnswerScript

# The follow-up asking where the defects are (grounding): its own template per task.
FOLLOWUP_TEMPLATES = {"defects": {Task.T2I: "defect_phrases", Task.EDIT: "defect_phrases_edit"}}
# PARROT's teacher calls: the critique template of the item's shape, then an addendum template.
ADDENDA = {"anchored": "parrot_anchored", "consistency": "parrot_consistency", "projection": "parrot_projection"}


class CritiqueInputError(RationalRewardsError, ValueError):
    """A request the critic cannot judge (empty prompt, mismatched images)."""


@dataclass(frozen=True)
class Item:
    """One thing to ask the critic about.

    Args:
        task: T2I (an image for a prompt) or Edit (a source image, then the edit, for an instruction).
        mode: ``pointwise`` (one candidate) or ``pairwise`` (A and B): a critique; ``defects``: the
            grounding follow-up; ``anchored`` / ``consistency`` / ``projection``: PARROT's teacher calls.
        request: the prompt or editing instruction.
        images: the source first (Edit), then the candidate(s): PIL images or ComfyUI (H, W, C) tensors.
        fields: more ``{name}`` values for the templates (the follow-up's critique, PARROT's rationale).
        match: what scripted rules' ``when_request_contains`` is matched against (default: ``request``).
    """
    task: Task
    mode: str
    request: str
    images: tuple[ImageInput, ...]
    fields: tuple[tuple[str, str], ...] = ()
    match: str | None = None

    @property
    def candidates(self) -> int:
        return len(self.images) - (1 if self.task is Task.EDIT else 0)

    @property
    def critique_mode(self) -> str:
        """The critique's shape: the item's own mode; one judged image for the follow-up; pointwise or
        pairwise by the number of candidates for PARROT's calls."""
        if self.mode in CRITIQUE_MODES:
            return self.mode
        if self.mode in FOLLOWUP_TEMPLATES:
            return "pointwise"
        return "pointwise" if self.candidates == 1 else "pairwise"


@dataclass(frozen=True)
class Request:
    """An item ready for a backend: the chat request, the scripted answer (None: decode freely), and
    the record every result of it carries (template name/hash/source, image size)."""
    item: Item
    chat: ChatRequest
    forced: str | None
    record: dict[str, Any] = field(default_factory=dict)


@dataclass
class Critic:
    """A backend plus what decides its prompts: image size, template folders, scripted answers.

    Args:
        backend: anything meeting :class:`~rationalrewards.backends.base.Backend`.
        max_pixels: images above this are scaled down before the backend sees them (None: the processor decides).
        template_dir: folder(s) read before the pack's own templates, in order.
        script: scripted answers (the replay node and the tests).
        name: what records and messages call this critic (default: the backend's model name).
        max_pixels_source: why ``max_pixels`` has its value (shown with it).
    """
    backend: Backend
    max_pixels: int | None = None
    template_dir: TemplateDirs = None
    script: AnswerScript | None = None
    name: str = ""
    max_pixels_source: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.backend, Backend):
            raise TypeError(f"{type(self.backend).__name__} does not implement the Backend contract "
                            "(rationalrewards.backends.base.Backend)")
        self.name = self.name or self.backend.model_name

    def with_script(self, script: AnswerScript | None) -> "Critic":
        """A critic sharing this backend whose answers follow ``script`` where it matches."""
        return replace(self, script=script)

    # -- building blocks ----------------------------------------------------------------------------
    def template_dirs(self) -> list[Path]:
        """The user template folders, in the order they are read (the pack's own folder comes after)."""
        return _dirs(self.template_dir)

    def template(self, task: Task, mode: str) -> Template:
        """The template ``mode`` starts from: a critique template, or the follow-up's own."""
        if mode in FOLLOWUP_TEMPLATES:
            return get_template(FOLLOWUP_TEMPLATES[mode][Task(task)], self.template_dir)
        return get_template(template_name(task, mode), self.template_dir)

    def image_size(self) -> dict[str, object]:
        """What a critique records about the image size the critic saw."""
        return {"max_pixels": self.max_pixels,
                "source": self.max_pixels_source or ("set by the caller" if self.max_pixels
                                                     else "the processor decides")}

    def prepare(self, item: Item) -> Request:
        """Validate ``item`` and turn it into what a backend needs (the one way every caller does it)."""
        if item.mode not in MODES:
            raise ValueError(f"unknown mode {item.mode!r}; one of {', '.join(MODES)}")
        if not item.request or not item.request.strip():
            what = "instruction" if item.task is Task.EDIT else "prompt"
            raise CritiqueInputError(f"the {what} is empty: the critic judges an image against its {what}, "
                                     f"so type the {what} that produced the image")
        names = _image_names(item)
        if len(names) != len(item.images):
            raise CritiqueInputError(f"{item.mode} {item.task.value} judging takes {len(names)} image(s) "
                                     f"({', '.join(names)}); got {len(item.images)}")
        images = [prepare_image(img, self.max_pixels, what) for img, what in zip(item.images, names)]
        fields = dict(item.fields)
        base = self.template(item.task, item.mode if item.mode in FOLLOWUP_TEMPLATES else item.critique_mode)
        chat = render(base, item.request.strip(), images, fields if item.mode in FOLLOWUP_TEMPLATES else None)
        record: dict[str, Any] = {"template": base.info(), "image_size": self.image_size()}
        if item.mode in ADDENDA:
            addendum = get_addendum(ADDENDA[item.mode], self.template_dir)
            chat = replace(chat, parts=chat.parts + render(addendum, item.request.strip(), [], fields).parts)
            record["addendum"] = addendum.info()
        forced = self.script.answer_for(item.task, item.mode, item.match or item.request) if self.script else None
        return Request(item, chat, forced, record)

    def build(self, item: Item) -> ChatRequest:
        """Only the chat request of :meth:`prepare` (what a test or a benchmark sends by hand)."""
        return self.prepare(item).chat

    def answer(self, requests: Sequence[Request], options: GenerationOptions | None = None, *,
               progress: ProgressFn | None = None, should_stop: StopFn | None = None,
               answer_progress: Callable[[float], None] | None = None) -> list[str]:
        """Raw answers for prepared ``requests``, in order, from one backend call.

        ``progress`` counts tokens against the budget; ``answer_progress`` gets the fraction of the
        answers written (by their sections, see critic/progress.py), which reaches 1.0 when they end."""
        options = options or GenerationOptions()
        tracker = None
        extra = {}
        if answer_progress is not None:
            tracker = AnswerProgress([headers_in(r.chat.text) for r in requests], answer_progress)
            extra["stream"] = tracker
        answers = self.backend.generate([r.chat for r in requests], options, forced=[r.forced for r in requests],
                                        progress=progress, should_stop=should_stop, **extra)
        if tracker is not None:
            tracker.finish()
        return answers

    @staticmethod
    def parse(request: Request, answer: str) -> Critique | PairwiseCritique:
        """A critique answer read by the parser, carrying its request's record."""
        item = request.item
        parse = parse_pairwise if item.critique_mode == "pairwise" else parse_critique
        result = parse(answer, item.task)
        result.record = dict(request.record)
        return result

    # -- what users call ------------------------------------------------------------------------------
    def run(self, items: Sequence[Item], options: GenerationOptions | None = None, **hooks) -> list[str]:
        """Raw answers for ``items`` (all validated and rendered first, so bad input fails before the model runs)."""
        return self.answer([self.prepare(it) for it in items], options, **hooks)

    def judge(self, items: Sequence[Item], options: GenerationOptions | None = None, **hooks
              ) -> list[Critique | PairwiseCritique]:
        """Parsed critiques (pointwise or pairwise) of ``items``, each with its record."""
        requests = [self.prepare(it) for it in items]
        return [self.parse(r, a) for r, a in zip(requests, self.answer(requests, options, **hooks))]

    def critique(self, images: Sequence[ImageInput], prompts: str | Sequence[str],
                 options: GenerationOptions | None = None, *, sources: Sequence[ImageInput] | None = None,
                 progress: ProgressFn | None = None, should_stop: StopFn | None = None,
                 answer_progress: Callable[[float], None] | None = None) -> list[Critique]:
        """Pointwise critiques, one per image. With ``sources`` the task is Edit: one source for every
        image, or one per image."""
        prompts = per_item(prompts, len(images), "prompts")
        task = Task.EDIT if sources is not None else Task.T2I
        srcs = per_item(list(sources), len(images), "source images") if sources is not None else None
        items = [Item(task, "pointwise", p, (img,) if srcs is None else (srcs[i], img))
                 for i, (img, p) in enumerate(zip(images, prompts))]
        return self.judge(items, options, progress=progress, should_stop=should_stop,
                          answer_progress=answer_progress)

    def compare(self, image_a: ImageInput, image_b: ImageInput, prompt: str,
                options: GenerationOptions | None = None, *, source: ImageInput | None = None,
                progress: ProgressFn | None = None, should_stop: StopFn | None = None,
                answer_progress: Callable[[float], None] | None = None) -> PairwiseCritique:
        task = Task.EDIT if source is not None else Task.T2I
        images = (image_a, image_b) if source is None else (source, image_a, image_b)
        return self.judge([Item(task, "pairwise", prompt, images)], options, progress=progress,
                          should_stop=should_stop, answer_progress=answer_progress)[0]


def _image_names(item: Item) -> list[str]:
    """What each image of ``item`` is (messages about a bad image name it)."""
    source = ["source image"] if item.task is Task.EDIT else []
    if item.critique_mode == "pairwise":
        return source + ["image A", "image B"]
    return source + ["edited image" if item.task is Task.EDIT else "image"]


def per_item(values: Any, n: int, what: str) -> list:
    """One value for each of ``n`` items: a single value (or a list of one) is used for all of them."""
    if isinstance(values, str):
        return [values] * n
    values = list(values)
    if len(values) == 1:
        return values * n
    if len(values) != n:
        raise CritiqueInputError(f"{len(values)} {what} for {n} images; give one, or one per image")
    return values
