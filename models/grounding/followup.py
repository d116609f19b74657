"""Ask the critic which regions its critique is about (one short follow-up turn).

The follow-up reuses the judged image(s) and quotes the parsed critique, so any backend that can
critique can answer it (no multi-turn state). The prompt lives in ``templates/defect_phrases*.txt``;
the critic renders it (:meth:`Critic.prepare`, mode ``defects``), so a scripted critic answers it only
with rules whose mode is ``defects``: a critique rule never hijacks the follow-up.
"""
from __future__ import annotations

from dataclasses import replace

from PIL import Image

from ..backends.base import GenerationOptions, ProgressFn, StopFn
from ..critic.critic import Critic, Item
from ..critic.prompting import IMAGE_MARKER
from ..judging.critique import Critique
from ..judging.rubric import Task
from .phrases import PhraseResult, critique_digest, parse_region_answer

DEFECTS_MODE = "defects"


def followup_item(critique: Critique, request: str, image: Image.Image, source: Image.Image | None = None,
                  max_regions: int = 4) -> Item:
    """The follow-up as an item: ``{critique}`` quotes the parsed critique (its ``<image>`` markers
    defused), ``{max_regions}`` caps the answer; the template's fields are filled in one pass."""
    task = Task.EDIT if source is not None else Task.T2I
    fields = (("critique", critique_digest(critique).replace(IMAGE_MARKER, "[image]")),
              ("max_regions", str(max_regions)))
    return Item(task, DEFECTS_MODE, request, (image,) if source is None else (source, image), fields)


def ask_regions(critic: Critic, critique: Critique, request: str, image: Image.Image,
                source: Image.Image | None = None, *, max_regions: int = 4,
                options: GenerationOptions | None = None, progress: ProgressFn | None = None,
                should_stop: StopFn | None = None) -> PhraseResult:
    """One follow-up generation; its answer parsed into phrases (``raw`` keeps the answer)."""
    options = options or GenerationOptions(max_new_tokens=256, temperature=0.0)
    item = followup_item(critique, request, image, source, max_regions)
    answer = critic.answer([critic.prepare(item)], options, progress=progress, should_stop=should_stop)[0]
    result = parse_region_answer(answer, critique, max_regions)
    return replace(result, raw=answer)
