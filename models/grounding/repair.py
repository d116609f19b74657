"""The region repair loop: critique -> regions -> mask -> inpaint -> re-critique, round after round.

Round 0 is the image as given (judged, never repaired). Each later round repairs the *best image so
far* in the regions named by that image's own critique, so a region fixed in round 1 is not masked
again in round 2, and a new defect is. The stop rule, keep-the-best and the history are the critique
loops' shared logic (:mod:`rationalrewards.judging.loop`); this module adds what a repair needs: the
round's mask plan (a cap on the masked area, all regions at once or one per round), the repair
round's record (phrases, masked area, score before and after) and the state that travels between
the ComfyUI loop nodes (or a headless driver).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Sequence

import torch

from ..judging.critique import Critique, overall_label
from ..judging.loop import History, Rounds, StopRule, Verdict, next_seed
from .detect import Detection
from .localise import MASK_MODES, ImageLocalisation

REGENERATION = "that is a regeneration, not a repair"


@dataclass(frozen=True)
class RepairOptions:
    """How a round's mask is made from the regions found: all at once (``union``) or the most severe
    one per round (``per_phrase``), and the largest share of the image a repair may cover."""
    mask_mode: str = "union"
    max_area: float = 0.5

    def __post_init__(self) -> None:
        if self.mask_mode not in MASK_MODES:
            raise ValueError(f"mask mode must be one of {MASK_MODES}; got {self.mask_mode!r}")
        if not 0.0 < self.max_area <= 1.0:
            raise ValueError(f"the masked-area cap must be above 0 and at most 1 (the whole image); got {self.max_area:g}")


def mask_area(mask: torch.Tensor) -> float:
    """Share of the image a mask covers (soft edges count by their weight), in [0, 1]."""
    return float(mask.float().mean()) if mask.numel() else 0.0


def _percent(area: float) -> str:
    return f"{100 * area:.0f}%"


@dataclass(frozen=True)
class RepairPlan:
    """What one repair round does: the image it repairs (``subject``, the best round so far), the
    phrases that round's critique gave, the mask, and why there is nothing to do (``reason``)."""
    round: int
    subject: int
    seed: int
    phrases: tuple[str, ...] = ()
    found: tuple[str, ...] = ()                       # phrases whose regions the mask covers
    refused: tuple[tuple[str, float], ...] = ()       # (phrase, area) left out: over the cap
    mask: Any = None                                  # [H, W] float in [0, 1]; None: the body makes it
    area: float = 0.0
    reason: str = ""                                  # '' when the round can run
    notes: tuple[str, ...] = ()
    detections: tuple[Detection, ...] = ()

    @property
    def runs(self) -> bool:
        return not self.reason

    def refusal_dicts(self) -> list[dict]:
        return [{"phrase": p, "area": round(a, 4)} for p, a in self.refused]


def plan_regions(round_index: int, subject: int, seed: int, phrases: Sequence[str], localisation: ImageLocalisation | None,
                 options: RepairOptions = RepairOptions(), notes: Sequence[str] = ()) -> RepairPlan:
    """The mask of one repair round from the subject's localisation (``None``: the loop body localises).

    A phrase whose own region covers more than ``options.max_area`` of the image is refused (left out
    and reported); in ``union`` mode the rest are repaired together, and the round is refused when
    they still cover too much; in ``per_phrase`` mode the first (most severe) phrase left is repaired
    and the others wait for a later round's critique. No phrase, nothing found or nothing left: the
    plan says why (``reason``) and the loop stops, since the next round would see the same critique.
    """
    notes = tuple(n for n in notes if not n.startswith("no defect phrases"))   # Defect Phrases' own closing note
    base = RepairPlan(round_index, subject, seed, tuple(phrases), notes=notes)
    if not phrases:
        return replace(base, reason=f"the critique of round {subject} names no region to repair"
                                    + (f" ({'; '.join(notes)})" if notes else ""))
    if localisation is None:
        return base
    found = {d.phrase for d in localisation.detections}
    dets = tuple(localisation.detections)
    if not found:
        return replace(base, detections=dets, reason=f"no region found in round {subject}'s image for "
                                                      f"{', '.join(repr(p) for p in phrases)} (lower the box "
                                                      "threshold, or rephrase)")
    kept: list[int] = []
    refused: list[tuple[str, float]] = []
    for i, phrase in enumerate(localisation.phrases):
        if phrase not in found:
            continue
        area = mask_area(localisation.phrase_masks[i])
        if area > options.max_area:
            refused.append((phrase, area))
        else:
            kept.append(i)
    if options.mask_mode == "per_phrase":
        kept = kept[:1]
    base = replace(base, refused=tuple(refused), detections=dets)
    if not kept:
        worst = ", ".join(f"{p!r} {_percent(a)}" for p, a in refused)
        return replace(base, reason=f"round {round_index}'s mask was refused: {worst} of the image is over the "
                                    f"{_percent(options.max_area)} cap ({REGENERATION})")
    mask = localisation.phrase_masks[kept].amax(0)
    area = mask_area(mask)
    plan = replace(base, found=tuple(localisation.phrases[i] for i in kept), mask=mask, area=area)
    if area > options.max_area:
        return replace(plan, mask=None, reason=f"round {round_index}'s mask was refused: the regions together cover "
                                               f"{_percent(area)} of the image, over the {_percent(options.max_area)} "
                                               f"cap ({REGENERATION}); repair one region per round, or raise the cap")
    return plan


def with_body_mask(plan: RepairPlan, mask: torch.Tensor, options: RepairOptions) -> RepairPlan:
    """The plan with the mask the loop body's own localiser made (a batch of masks counts as their
    union): empty or over the cap, the round is refused and the plan says why."""
    union = mask.float().reshape(-1, *mask.shape[-2:]).amax(0) if mask.numel() else mask.float()
    area = mask_area(union)
    if area == 0.0:
        return replace(plan, mask=None, area=0.0, reason=f"round {plan.round}: the mask from the loop's localiser "
                                                         "is empty, so there is nothing to repair")
    if area > options.max_area:
        return replace(plan, mask=None, area=area,
                       reason=f"round {plan.round}'s mask was refused: the loop's localiser masked {_percent(area)} "
                              f"of the image, over the {_percent(options.max_area)} cap ({REGENERATION})")
    return replace(plan, mask=union, area=area, found=plan.found or plan.phrases)


@dataclass(kw_only=True)
class RepairRound(Verdict):
    """A repair round (round 0: the image as given): which round's image it repaired, the phrases its
    critique gave, what the mask covered, and the overall score before (the subject's) and after."""
    seed: int | None = None
    subject: int | None = None
    phrases: list[str] = field(default_factory=list)
    found: list[str] = field(default_factory=list)
    refused: list[dict] = field(default_factory=list)
    mask_area: float = 0.0
    before: float | None = None
    note: str = ""


@dataclass
class RepairHistory(History):
    """The repair loop's rounds: round 0 (the image as given) is not counted towards max rounds."""
    round_type = RepairRound
    uncounted = 1
    unit = "repair round"

    def table(self) -> str:
        lines = []
        for r in self.rounds:
            best = "  <- best" if r.index == self.best else ""
            good = " (good)" if r.good else ""
            if r.subject is None:
                lines.append(f"round 0 (as given): overall {overall_label(r.overall)}{good}{best}")
                continue
            lines.append(f"round {r.index}: repaired round {r.subject}, overall {overall_label(r.before)} -> "
                         f"{overall_label(r.overall)}{good} seed {r.seed}{best}")
            lines.append(f"    regions: {', '.join(r.found) or 'from the loop localiser'}; masked "
                         f"{100 * r.mask_area:.1f}% of the image")
            for refusal in r.refused:
                lines.append(f"    refused: {refusal['phrase']} ({100 * refusal['area']:.0f}% of the image)")
        if self.stop_reason:
            lines.append(f"stopped: {self.stop_reason}")
        if self.best is None and self.rounds:
            lines.append("no round could be scored: returning the image as given")
        return "\n".join(lines)


@dataclass(frozen=True)
class Judged:
    """What a round hands back to the loop: its image(s), their critiques, the request they were judged
    against and the edit source (None for text-to-image)."""
    batch: Any
    critiques: tuple[Critique, ...]
    request: str
    source: Any = None


@dataclass(frozen=True, kw_only=True)
class RepairState(Rounds):
    """A region repair loop between rounds: what Repair Loop Start plans from and Repair Loop End records into.

    ``round`` is the round being made: 0 is the image as given (Loop End judges it; nothing is
    inpainted), then each repair round's :class:`RepairPlan` is set by :meth:`planned` and recorded by
    :meth:`record`. Per round the state keeps the request and edit source its critique used, and the mask.
    """
    history: RepairHistory = field(default_factory=RepairHistory)
    options: RepairOptions = RepairOptions()
    seed: int = 0                         # the next repair's seed
    round: int = 0
    original: Judged | None = None        # round 0 until it is recorded
    plan: RepairPlan | None = None        # this repair round's regions (set by Loop Start)
    requests: tuple[str, ...] = ()
    sources: tuple[Any, ...] = ()
    masks: tuple[Any, ...] = ()           # per round: the mask inpainted (None for round 0)
    previews: tuple[Any, ...] = ()        # per round: what the host showed of it (ComfyUI: image refs)

    @classmethod
    def begin(cls, image: Any, critique: Critique, request: str, source: Any = None, *, seed: int = 0,
              options: RepairOptions = RepairOptions()) -> "RepairState":
        """Round 0: the image to repair and its critique, to be judged by the loop's rule."""
        return cls(original=Judged(image, (critique,), request, source), seed=seed, options=options)

    @property
    def subject(self) -> int:
        """The round whose image the next repair starts from: the best so far (round 0 when none is readable)."""
        return self.result_round

    @property
    def repairing(self) -> bool:
        """True when this round inpaints: a repair round whose plan runs and no stop was decided."""
        return self.round > 0 and not self.done and self.plan is not None and self.plan.runs

    def planned(self, plan: RepairPlan) -> "RepairState":
        """This round's plan; the loop stops when it has nothing to repair or would repeat an earlier round."""
        reason = plan.reason
        for r in self.history.rounds[1:]:
            if not reason and (r.subject, r.phrases, r.seed) == (plan.subject, list(plan.phrases), plan.seed):
                reason = (f"round {plan.round} would repeat round {r.index} (the same image, regions and seed); "
                          "set 'next round's seed' to increment")
        if not reason:
            return replace(self, plan=plan)
        history = self.history.copy()
        history.stop_reason = reason
        return replace(self, plan=plan, history=history)

    def record(self, judged: Judged, rule: StopRule, *, weights: str | dict[str, float] | None = "equal",
               seed_policy: str = "increment", body_mask: torch.Tensor | None = None) -> "RepairState":
        """This round judged: its best image (of the batch) recorded with its plan, the stop rule applied,
        and, unless the loop stops, the next round's number and seed (its plan is Loop Start's).
        ``body_mask``: the mask the body's own localiser made, checked against the cap here."""
        if self.round == 0:
            plan = None
        elif self.plan is None:
            raise ValueError(f"round {self.round} has no plan; Repair Loop Start plans each round")
        else:
            plan = self.plan if body_mask is None else with_body_mask(self.plan, body_mask, self.options)
            if not plan.runs:
                return self.planned(plan)
        before = None if plan is None else self.history.rounds[plan.subject].overall

        def make(**v) -> RepairRound:
            if plan is None:
                return RepairRound(**v)
            return RepairRound(seed=plan.seed, subject=plan.subject, phrases=list(plan.phrases), found=list(plan.found),
                               refused=plan.refusal_dicts(), mask_area=round(plan.area, 6), before=before,
                               note="; ".join(plan.notes), **v)

        state, _, _ = self.add(judged.critiques, judged.batch, rule, weights, make)
        state = replace(state, original=None, plan=plan, requests=self.requests + (judged.request,),
                        sources=self.sources + (judged.source,),
                        masks=self.masks + (None if plan is None else plan.mask,))
        if state.done:
            return state
        seed = self.seed if plan is None else next_seed(self.seed, seed_policy)
        return replace(state, round=self.round + 1, seed=seed, plan=None)

    def with_preview(self, preview: Any) -> "RepairState":
        """The host's view of the latest recorded round (e.g. image refs for the card)."""
        return replace(self, previews=self.previews + (preview,))
