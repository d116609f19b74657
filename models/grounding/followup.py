"""Ask the critic which regions its critique is about (one short follow-up turn).

The follow-up reuses the judged image(s) and quotes the parsed critique, so any backend that can
critique can answer it (no multi-turn state). The prompt lives in ``templates/defect_phrases*.txt``.
A scripted critic answers it only with rules whose mode is ``defects``: a critique rule never
hijacks the follow-up.
"""
from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from PIL import Image

from ..backends.base import GenerationOptions, ProgressFn, StopFn
from ..judging.critique import Critique
from ..critic.images import prepare
from ..critic.prompting import IMAGE_MARKER, ChatRequest, Template, get_template, render
from ..judging.rubric import Task
from ..critic.script import AnswerScript
from .phrases import PhraseResult, critique_digest, parse_region_answer

if TYPE_CHECKING:
    from ..critic.critic import Critic

DEFECTS_MODE = "defects"
TEMPLATES = {Task.T2I: "defect_phrases", Task.EDIT: "defect_phrases_edit"}


def render_followup(template: Template | str, request: str, critique: Critique, images: list[Image.Image],
                    max_regions: int) -> ChatRequest:
    """Fill ``{request}``, ``{critique}`` and ``{max_regions}`` in one pass (quoted text is never
    re-scanned) and put the images at the ``<image>`` markers."""
    return render(template, request.strip(), images,
                  {"critique": critique_digest(critique).replace(IMAGE_MARKER, "[image]"),
                   "max_regions": str(max_regions)})


def scripted_answer(script: AnswerScript | None, task: Task, request: str) -> str | None:
    if script is None:
        return None
    rules = tuple(r for r in script.rules if r.mode == DEFECTS_MODE)
    return AnswerScript(rules).answer_for(task, DEFECTS_MODE, request) if rules else None


def ask_regions(critic: "Critic", critique: Critique, request: str, image: Image.Image,
                source: Image.Image | None = None, *, max_regions: int = 4,
                options: GenerationOptions | None = None, progress: ProgressFn | None = None,
                should_stop: StopFn | None = None) -> PhraseResult:
    """One follow-up generation; its answer parsed into phrases (``raw`` keeps the answer)."""
    options = options or GenerationOptions(max_new_tokens=256, temperature=0.0)
    task = Task.EDIT if source is not None else Task.T2I
    template = get_template(TEMPLATES[task], critic.template_dirs())
    images = [prepare(image, critic.max_pixels, "edited image" if source is not None else "image")]
    if source is not None:
        images.insert(0, prepare(source, critic.max_pixels, "source image"))
    chat = render_followup(template, request, critique, images, max_regions)
    forced = scripted_answer(critic.script, task, request)
    answer = critic.backend.generate([chat], options, forced=[forced], progress=progress,
                                     should_stop=should_stop)[0]
    result = parse_region_answer(answer, critique, max_regions)
    return replace(result, raw=answer)
