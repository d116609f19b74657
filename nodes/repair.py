"""Region repair loop around any inpainting, by ComfyUI node expansion (the refine loop's).

Wire: your image -> Critique -> Repair Loop Start (+ grounding) -> your inpainting (Start's image, mask
and seed) -> Critique -> Repair Loop End. Round 0 is the image as given: Loop End judges it by its rule
while the body waits (Start blocks it). Each later round, Start finds the regions named by the best
image's critique and supplies that image, the mask, the phrases and a seed; End records the repaired
image and its critique, keeps the best, and stops or clones the body for the next round. The loop's
logic is the core's (``grounding/repair.py`` on ``judging/loop.py``); these nodes move tensors.
"""
from __future__ import annotations

import torch
import comfy.model_management
from comfy_api.latest import io, ui
from comfy_execution.graph_utils import ExecutionBlocker

from ..models.backends.base import GenerationOptions
from ..models.grounding.detect import as_bounding_boxes
from ..models.grounding.localise import MASK_MODES, GroundingModels, LocaliseOptions, localise_image
from ..models.grounding.masks import tint
from ..models.grounding.phrases import PHRASE_SOURCES, pick_phrases
from ..models.grounding.repair import Judged, RepairOptions, RepairPlan, RepairState, plan_regions
from ..models.judging.cards import repair_card
from ..models.judging.loop import SEED_POLICIES, StopRule, parse_stop_dimensions, stop_dimension_names
from ..models.judging.rubric import ALL_DIMENSIONS
from .common import (CATEGORY, CriticType, CritiqueSet, CritiqueType, fail, naming, require_critiques, status,
                     to_pil_list, weights_input)
from .localise import BoundingBox, DefectPhrases, GroundingType, box_outputs, grounding_device
from .loop import check_stop_dimensions, expand_next_round, stack_images

RepairLoopType = io.Custom("RR_REPAIR_LOOP")
RepairStateType = io.Custom("RR_REPAIR_STATE")
START, END = "Repair Loop Start", "Repair Loop End"
FOLLOW_UP = GenerationOptions(max_new_tokens=256, temperature=0.0, seed=0)   # greedy: a strict answer format


def start_outputs() -> list:
    """Repair Loop Start's outputs (boxes only where core has the bounding-box type)."""
    outs = [
        RepairLoopType.Output(display_name="loop", tooltip="Connect to Repair Loop End"),
        io.Image.Output(display_name="image", tooltip="The image this round repairs: the best one so far. Inpaint "
                                                      "it, and paste the repair into it"),
        io.Mask.Output(display_name="mask", tooltip="Where to repaint this round (grown, feathered, under the cap)"),
        io.String.Output(display_name="phrases", tooltip="The regions this round's critique named, one per line, most "
                                                         "severe first: what the mask was searched for (for your own "
                                                         "localiser, or your inpaint prompt)"),
        io.Int.Output(display_name="seed", tooltip="This round's seed: connect it to your inpainting sampler"),
        io.Int.Output(display_name="round", tooltip="1 for the first repair"),
    ]
    return outs + box_outputs()


def _blocked(state: RepairState) -> io.NodeOutput:
    """Start's outputs when this round inpaints nothing: the loop state, and the body held back."""
    return io.NodeOutput(state, *[ExecutionBlocker(None)] * (len(start_outputs()) - 1))


class RepairLoopStart(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="RR_RepairLoopStart",
            **naming(START, "repair", "fix flaws", "inpaint loop", "fix hands", "defect", shown=("inpaint loop",)),
            category=CATEGORY + "/loop",
            description="Opens a region repair loop around your own inpainting. Each round it takes the best image "
                        "so far, turns its critique into phrases (Defect Phrases), finds them (GroundingDINO + SAM) "
                        "and hands your inpainting the image, the mask, the phrases and a seed. Close the loop with "
                        "Repair Loop End.",
            inputs=[
                io.Image.Input("image", tooltip="The image to repair (one image)"),
                CritiqueType.Input("critique_data", display_name="critique",
                                   tooltip="Its critique: critique_data from Critique Image (or Critique Edit) of that "
                                           "image, outside the loop"),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True,
                             tooltip="Seed of the first repair; 'next round's seed' on Loop End decides later ones"),
                io.Combo.Input("source", display_name="phrases from", options=list(PHRASE_SOURCES),
                               default="ask_critic",
                               tooltip="ask_critic: one short follow-up question to the critic per round (needs the "
                                       "critic input). justifications: phrases picked from the critique text, no "
                                       "model call. typed: only the phrases typed below."),
                io.String.Input("typed_phrases", display_name="your phrases", multiline=True, default="",
                                tooltip="Your own phrases, one per line: searched every round, besides the critic's"),
                io.Int.Input("max_regions", display_name="max regions", default=4, min=1, max=16,
                             tooltip="At most this many phrases per round, most severe first"),
                io.Float.Input("score_below", display_name="fix scores below", default=3.5, min=1.0, max=4.01,
                               step=0.25,
                               tooltip="Only dimensions scoring below this count as defects (4 = no problem); when "
                                       "every score is at or above it there is nothing to repair and the loop stops"),
                io.Float.Input("box_threshold", display_name="box confidence", default=0.3, min=0.0, max=1.0,
                               step=0.01, tooltip="Keep a box when its best-matching word beats this probability"),
                io.Float.Input("text_threshold", display_name="phrase match", default=0.25, min=0.0, max=1.0,
                               step=0.01, tooltip="...and its phrase's words average at least this"),
                io.Combo.Input("mask_mode", display_name="regions per round", options=list(MASK_MODES),
                               default="union",
                               tooltip="union: every region found is repaired at once. per_phrase: only the most "
                                       "severe region each round; the next round's critique picks the next one"),
                io.Int.Input("grow", default=8, min=-256, max=256,
                             tooltip="Dilate each round's mask by this many pixels (negative shrinks) so the repair "
                                     "covers the region's edges"),
                io.Int.Input("feather", default=4, min=0, max=256,
                             tooltip="Soften each round's mask edge over about this many pixels"),
                io.Float.Input("max_area", display_name="max masked area", default=0.5, min=0.01, max=1.0, step=0.01,
                               tooltip="A region, or a round's mask, covering more than this share of the image is "
                                       "refused and reported (that is a regeneration, not a repair). 1 = no cap"),
                GroundingType.Input("grounding", optional=True,
                                    tooltip="From Load Grounding Models. Leave unconnected only when your own "
                                            "localiser inside the loop makes the mask (connect that mask to Repair "
                                            "Loop End)"),
                CriticType.Input("critic", optional=True,
                                 tooltip="The critic that wrote the critiques; needed for phrases from 'ask_critic'"),
                RepairStateType.Input("state", optional=True, tooltip="Set by Repair Loop End; leave unconnected"),
            ],
            outputs=start_outputs(),
        )

    @classmethod
    def execute(cls, image, critique_data, seed: int, source: str, typed_phrases: str, max_regions: int,
                score_below: float, box_threshold: float, text_threshold: float, mask_mode: str, grow: int,
                feather: int, max_area: float, grounding=None, critic=None, state=None) -> io.NodeOutput:
        try:
            options = RepairOptions(mask_mode, max_area)
            localise = LocaliseOptions(box_threshold, text_threshold, max_regions, "best", grow, feather)
        except ValueError as e:
            raise fail(START, str(e)) from None
        if source not in PHRASE_SOURCES:
            raise fail(START, f"'phrases from' must be one of {PHRASE_SOURCES}")
        if grounding is not None and not isinstance(grounding, GroundingModels):
            raise fail(START, "the grounding input is not RR_GROUNDING; connect Load Grounding Models")
        if state is None:
            return _blocked(cls._begin(image, critique_data, seed, options))
        if not isinstance(state, RepairState):
            raise fail(START, "'state' is set by Repair Loop End; leave it unconnected")
        plan = cls._plan(state, options, localise, source, typed_phrases, max_regions, score_below, grounding, critic)
        state = state.planned(plan)
        if not state.repairing:
            status(START, f"round {state.round}: {state.history.stop_reason}")
            return _blocked(state)
        subject = state.kept[plan.subject]
        h, w = int(subject.shape[1]), int(subject.shape[2])
        mask = plan.mask[None] if plan.mask is not None else torch.zeros((1, h, w))
        status(START, f"round {plan.round}: repairing round {plan.subject}'s image"
                      + (f" where {', '.join(plan.found)} ({100 * plan.area:.1f}% of it)" if plan.mask is not None
                         else f"; the loop localises {', '.join(plan.phrases)}"))
        outs = [state, subject, mask.float().contiguous(), "\n".join(plan.phrases), plan.seed, plan.round]
        if BoundingBox is not None:
            outs.append([as_bounding_boxes(plan.detections)])
        return io.NodeOutput(*outs)

    @staticmethod
    def _begin(image, critique_data, seed: int, options: RepairOptions) -> RepairState:
        """Round 0: the image and its critique, judged by Loop End before any repair."""
        if not isinstance(image, torch.Tensor) or image.ndim not in (3, 4):
            raise fail(START, "image must be an IMAGE")
        batch = image if image.ndim == 4 else image.unsqueeze(0)
        if batch.shape[0] != 1:
            raise fail(START, f"image is a batch of {batch.shape[0]}; the loop repairs one image: pick one first "
                              "(e.g. Rank Images' best)")
        data = require_critiques(critique_data, START, "the Critique node that judged this image")
        if len(data) != 1:
            raise fail(START, f"critique_data holds {len(data)} critiques; connect the critique of this one image")
        return RepairState.begin(batch, data.critiques[0], data.prompts[0], data.sources, seed=seed, options=options)

    @staticmethod
    def _plan(state: RepairState, options: RepairOptions, localise: LocaliseOptions, source: str, typed: str,
              max_regions: int, score_below: float, grounding, critic) -> RepairPlan:
        """This round's phrases (from the best image's own critique) and, with grounding, its mask."""
        s = state.subject
        image, critique, request = state.kept[s], state.critiques[s], state.requests[s]
        data = CritiqueSet([critique], [request], images=image, sources=state.sources[s])
        comfy.model_management.throw_exception_if_processing_interrupted()
        pick = pick_phrases(critique, request, source, typed, max_regions=max_regions, score_below=score_below,
                            ask=lambda notes: DefectPhrases._ask(START, critic, data, 0, max_regions, FOLLOW_UP, notes))
        texts = [p.text for p in pick.phrases]
        localisation = None
        if grounding is not None and texts:
            with grounding_device(grounding) as device:
                localisation = localise_image(grounding, to_pil_list(image, START)[0], texts, localise, device=device)
        return plan_regions(state.round, s, state.seed, texts, localisation, options, pick.notes)


def end_outputs() -> list:
    """Repair Loop End's outputs: the one declaration its schema, its expansion and :func:`_end_outputs` follow."""
    return [
        io.Image.Output(display_name="best_image", tooltip="The best round's image (the image as given when no "
                                                           "repair beat it)"),
        io.Image.Output(display_name="all_rounds", tooltip="Every round's image, round 0 (as given) first"),
        io.Mask.Output(display_name="all_masks", tooltip="Every round's mask, in the same order (round 0's is empty)"),
        io.String.Output(display_name="history_json",
                         tooltip="Rounds with phrases, masked area, scores before and after, the best, why it stopped"),
        io.String.Output(display_name="history", tooltip="The same history, readable"),
        io.Int.Output(display_name="best_round", tooltip="0 = the image as given; -1 when no round could be scored"),
        CritiqueType.Output(display_name="best_critique"),
    ]


def _masks(state: RepairState) -> torch.Tensor:
    """Every round's mask as one MASK batch at round 0's size (empty where a round inpainted nothing)."""
    h, w = int(state.kept[0].shape[1]), int(state.kept[0].shape[2])
    out = []
    for m in state.masks:
        m = torch.zeros((h, w)) if m is None else m.float().cpu()
        if m.shape != (h, w):
            m = torch.nn.functional.interpolate(m[None, None], size=(h, w), mode="bilinear", align_corners=False)[0, 0]
        out.append(m)
    return torch.stack(out, 0)


def _end_outputs(state: RepairState, weights: str) -> tuple:
    """Repair Loop End's outputs, in :func:`end_outputs` order, from a finished loop's state."""
    best, history = state.result_round, state.history
    critique = CritiqueSet([state.critiques[best]], [state.requests[best]], weights, images=state.kept[best],
                           sources=state.sources[best])
    return (state.kept[best], stack_images(list(state.kept)), _masks(state), history.to_json(), history.table(),
            -1 if state.best_round is None else best, critique)


def _thumbs(state: RepairState, cls) -> dict:
    """The latest round's card images, saved once: its mask over the image it repaired, and the result."""
    rnd = state.history.rounds[-1]
    image = ui.PreviewImage(state.kept[-1], cls=cls).as_dict()["images"][0]
    if rnd.subject is None:
        return {"image": image}
    shown = tint(state.kept[rnd.subject], state.masks[-1])
    return {"mask": ui.PreviewImage(shown, cls=cls).as_dict()["images"][0], "image": image}


class RepairLoopEnd(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="RR_RepairLoopEnd",
            **naming(END, "repair", "keep best", "inpaint loop", shown=("inpaint loop",)),
            category=CATEGORY + "/loop",
            description="Closes a region repair loop: judges the image as given (round 0), then records each "
                        "repaired image with its critique and keeps the best by overall score. Stops when the "
                        "critique meets the rule (published: Text Faithfulness and Physical Quality >= 3), when no "
                        "region is left to repair, when a repair is no better than the best so far, or after max "
                        "rounds; otherwise repairs the best image again.",
            enable_expand=True,
            is_output_node=True,
            inputs=[
                RepairLoopType.Input("loop", tooltip="From Repair Loop Start"),
                io.Image.Input("image", lazy=True, tooltip="This round's repaired image (a batch: the best is kept)"),
                CritiqueType.Input("critique_data", display_name="critique", lazy=True,
                                   tooltip="critique_data from the Critique node that judges this round's image, "
                                           "against the same prompt"),
                io.Int.Input("max_rounds", display_name="max repair rounds", default=3, min=1, max=20,
                             tooltip="Repairs at most (the image as given is round 0 and not counted)"),
                io.String.Input("stop_dimensions", display_name="good enough when these",
                                default=stop_dimension_names(),
                                tooltip="The scores that must all reach the threshold to stop, by the names on the "
                                        "critique card, comma-separated: "
                                        + ", ".join(d.title for d in ALL_DIMENSIONS) + ". Checked when you queue."),
                io.Float.Input("threshold", display_name="reach this score (1-4)", default=3.0, min=1.0, max=4.0,
                               step=0.25, tooltip="The score (1-4) each of those must reach; 3.0 as published"),
                io.Boolean.Input("stop_when_no_improvement", display_name="stop when no better", default=True,
                                 tooltip="Stop when a repair scores no better than the best image so far"),
                io.Combo.Input("seed_policy", display_name="next round's seed", options=list(SEED_POLICIES),
                               default="increment",
                               tooltip="increment: seed + 1 each round (a retry of the same regions differs); same: "
                                       "keep the seed (a round that would repeat an earlier one stops the loop)"),
                weights_input(),
                io.Mask.Input("mask", optional=True, lazy=True,
                              tooltip="Only when your own localiser in the loop makes the mask (e.g. core's SAM3 "
                                      "Detect fed with Loop Start's phrases): that mask, for the area cap, the history "
                                      "and the card. Unconnected: Loop Start's mask"),
            ],
            outputs=end_outputs(),
            hidden=[io.Hidden.dynprompt, io.Hidden.unique_id],
        )

    @classmethod
    def validate_inputs(cls, stop_dimensions: str | None = None) -> bool | str:
        return check_stop_dimensions(stop_dimensions, END)

    @classmethod
    def check_lazy_status(cls, loop=None, image=None, critique_data=None, mask=None, **_) -> list[str]:
        """The body's results are needed only in a round that repairs (round 0 and stopped rounds skip it)."""
        if not (isinstance(loop, RepairState) and loop.repairing):
            return []
        wired = cls.hidden.dynprompt.get_node(cls.hidden.unique_id)["inputs"]
        return [name for name, value in (("image", image), ("critique_data", critique_data), ("mask", mask))
                if value is None and name in wired]

    @classmethod
    def execute(cls, loop, max_rounds: int, stop_dimensions: str, threshold: float, stop_when_no_improvement: bool,
                seed_policy: str, weights: str, image=None, critique_data=None, mask=None) -> io.NodeOutput:
        if not isinstance(loop, RepairState):
            raise fail(END, "'loop' must come from a Repair Loop Start node")
        comfy.model_management.throw_exception_if_processing_interrupted()
        try:
            rule = StopRule(parse_stop_dimensions(stop_dimensions), threshold, max_rounds, stop_when_no_improvement)
        except ValueError as e:
            raise fail(END, str(e)) from None
        if loop.round == 0:
            state = loop.record(loop.original, rule, weights=weights, seed_policy=seed_policy)
        elif loop.repairing:
            state = loop.record(cls._judged(image, critique_data, loop, mask), rule, weights=weights,
                                seed_policy=seed_policy, body_mask=mask)
        else:
            state = loop                  # Loop Start found nothing to repair: the loop ends here
        if len(state.history.rounds) > len(loop.history.rounds):
            state = state.with_preview(_thumbs(state, cls))
        ui_out = repair_card(state.history, state.critiques, state.previews)
        if state.done:
            return io.NodeOutput(*_end_outputs(state, weights), ui=ui_out)
        hidden = cls.hidden
        open_id = hidden.dynprompt.get_node(hidden.unique_id)["inputs"]["loop"][0]
        graph, clone = expand_next_round(hidden.dynprompt, hidden.unique_id, open_id, state)
        return io.NodeOutput(*(clone.out(i) for i in range(len(end_outputs()))), expand=graph.finalize(), ui=ui_out)

    @staticmethod
    def _judged(image, critique_data, loop: RepairState, mask) -> Judged:
        """This round's repaired image(s) and critique, checked against each other and the plan."""
        if not isinstance(image, torch.Tensor):
            raise fail(END, "image is missing: connect your inpainting's repaired IMAGE")
        data = require_critiques(critique_data, END, "the Critique node that judges the repaired image")
        batch = image if image.ndim == 4 else image.unsqueeze(0)
        if len(data) != batch.shape[0]:
            raise fail(END, f"critique_data holds {len(data)} critiques for {batch.shape[0]} repaired image(s); "
                            "critique the image connected here")
        if loop.plan.mask is None and mask is None:
            raise fail(END, "Repair Loop Start has no grounding connected, so the loop must make the mask: connect "
                            "your localiser's MASK to this node's mask input, or connect Load Grounding Models to "
                            "Repair Loop Start")
        return Judged(batch, tuple(data.critiques), data.prompts[0], data.sources)
