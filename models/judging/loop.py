"""Critique loops: the stop rule, keep-the-best and the round history, and the Generate-Critique-Refine loop.

Pure data logic, shared by the ComfyUI loop nodes and headless drivers. What every critique loop does
lives here once: :class:`StopRule` (good enough?), :func:`best_round` (unreadable rounds are never best),
:meth:`History.stop_reason_for` (met the rule / max rounds / no improvement) and :class:`Rounds`
(the rounds so far: record one round's batch, keep its best image). Two loops build on it:
:class:`LoopState` (Generate-Critique-Refine, below) and the region repair loop
(:mod:`rationalrewards.grounding.repair`). As published, a result is "good" when Text Faithfulness
and Physical Quality are both >= 3.0, and the loop reruns with the refined request and the same seed.
Several rounds, a stop when the score stops improving, and keeping the best round are our additions.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable, ClassVar, Sequence, TypeVar

from .ranking import rank
from .critique import Critique, ScoreStatus, overall_label
from .refine import refine
from .rubric import ALL_DIMENSIONS, BY_KEY, dimension_named

DEFAULT_STOP_DIMENSIONS = ("text_faithfulness", "physical_quality")
SEED_POLICIES = ("same", "increment")


def stop_dimension_names(keys: tuple[str, ...] = DEFAULT_STOP_DIMENSIONS) -> str:
    """The stop dimensions as the user types them: on-screen titles, comma-separated."""
    return ", ".join(BY_KEY[k].title for k in keys)


def parse_stop_dimensions(text: str) -> tuple[str, ...]:
    """Dimension keys from a comma-separated list of on-screen names (keys and aliases also work).

    Raises ValueError naming what was not recognised and the names that are, so a typo fails at
    queue time instead of silently never stopping the loop."""
    names = [part.strip() for part in (text or "").split(",") if part.strip()]
    allowed = ", ".join(d.title for d in ALL_DIMENSIONS)
    if not names:
        raise ValueError(f"no stop dimension given; list one or more of: {allowed}")
    unknown = [n for n in names if dimension_named(n) is None]
    if unknown:
        raise ValueError(f"unknown stop dimension {', '.join(repr(u) for u in unknown)}; "
                         f"use the names shown on the critique card, comma-separated: {allowed}")
    keys: list[str] = []
    for n in names:
        key = dimension_named(n).key
        if key not in keys:
            keys.append(key)
    return tuple(keys)


@dataclass(frozen=True)
class StopRule:
    dimensions: tuple[str, ...] = DEFAULT_STOP_DIMENSIONS
    threshold: float = 3.0
    max_rounds: int = 3
    stop_when_no_improvement: bool = True

    def is_good(self, critique: Critique) -> bool:
        """Every rule dimension the critique has is N/A or readable and >= threshold.

        An unreadable score never passes, and a critique with none of the rule's
        dimensions cannot be called good.
        """
        checked = 0
        for key in self.dimensions:
            dim = critique.dimensions.get(key)
            if dim is None:
                continue        # e.g. image_faithfulness asked of a T2I critique
            checked += 1
            if dim.status is ScoreStatus.NA:
                continue
            if math.isnan(dim.value) or dim.value < self.threshold:
                return False
        return checked > 0


@dataclass(kw_only=True)
class Verdict:
    """What every loop round records of its critique: the overall score, each dimension's, whether the
    stop rule is met, and the parser's warnings."""
    index: int
    overall: float | None            # None when the critique could not be read
    scores: dict[str, float | None]
    good: bool
    warnings: list[str] = field(default_factory=list)


def verdict(critique: Critique, rule: StopRule, weights: str | dict[str, float] | None = "equal") -> dict[str, Any]:
    """The :class:`Verdict` fields (all but ``index``) of one critique under ``rule``: NaN becomes None."""
    overall = critique.overall(weights)
    return {"overall": None if math.isnan(overall) else overall,
            "scores": {k: (None if math.isnan(d.value) else d.value) for k, d in critique.dimensions.items()},
            "good": rule.is_good(critique), "warnings": list(critique.warnings)}


@dataclass(kw_only=True)
class Round(Verdict):
    """A Generate-Critique-Refine round: the prompt and seed it generated with, and what came next."""
    prompt: str
    seed: int
    refined_prompt: str | None = None
    note: str = ""


R = TypeVar("R", bound=Verdict)


@dataclass
class History:
    """The rounds of a loop, the best so far and why it stopped; one subclass per loop kind says what a
    round records (``round_type``) and how many rounds count towards ``max_rounds``."""
    rounds: list = field(default_factory=list)
    stop_reason: str = ""
    best: int | None = None          # index of the best round; None if no round was readable

    round_type: ClassVar[type] = Round
    uncounted: ClassVar[int] = 0      # leading rounds that are not counted towards max_rounds
    unit: ClassVar[str] = "round"     # what max_rounds counts, in the stop reason

    def add_round(self, rnd: R) -> R:
        """Append a recorded round and update the best."""
        self.rounds.append(rnd)
        self.best = best_round(self.rounds)
        return rnd

    def add(self, critique: Critique, prompt: str, seed: int, rule: StopRule, weights: str = "equal") -> Round:
        """Record a Generate-Critique-Refine round."""
        return self.add_round(Round(index=len(self.rounds), prompt=prompt, seed=seed,
                                    **verdict(critique, rule, weights)))

    def stop_reason_for(self, rule: StopRule) -> str:
        """Why to stop after the latest round by the rules every loop shares, or '' to go on: the round
        meets the rule, the maximum is reached, or (when asked) it is no better than the best before it."""
        last = self.rounds[-1]
        if last.good:
            return f"round {last.index} meets the stop rule ({' and '.join(rule.dimensions)} >= {rule.threshold:g})"
        if len(self.rounds) - self.uncounted >= rule.max_rounds:
            return f"reached the maximum of {rule.max_rounds} {self.unit}(s)"
        if rule.stop_when_no_improvement and len(self.rounds) >= 2:
            previous = [r.overall for r in self.rounds[:-1] if r.overall is not None]
            if last.overall is not None and previous and last.overall <= max(previous):
                return f"round {last.index} did not improve on the best score ({max(previous):.3f})"
        return ""

    def decide_stop(self, rule: StopRule, next_prompt: str | None, next_seed: int) -> str:
        """Why to stop a Generate-Critique-Refine loop after the latest round, or '' to go on."""
        reason = self.stop_reason_for(rule)
        if reason:
            return reason
        last = self.rounds[-1]
        if next_prompt is None or (next_prompt == last.prompt and next_seed == last.seed):
            return "the critic proposed no change to the prompt, so another round would repeat this one"
        return ""

    def copy(self):
        """An independent copy (rounds included), so a recorded state stays as it was."""
        return type(self).from_dict(self.to_dict())

    def to_dict(self) -> dict:
        return {"rounds": [asdict(r) for r in self.rounds], "best": self.best, "stop_reason": self.stop_reason}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: dict):
        return cls(rounds=[cls.round_type(**r) for r in data["rounds"]], stop_reason=data.get("stop_reason", ""),
                   best=data.get("best"))

    @classmethod
    def from_json(cls, text: str):
        return cls.from_dict(json.loads(text))

    def table(self) -> str:
        lines = []
        for r in self.rounds:
            score = overall_label(r.overall)
            best = "  <- best" if r.index == self.best else ""     # plain text: PreviewAny renders markdown
            lines.append(f"round {r.index}: overall {score}{' (good)' if r.good else ''} seed {r.seed}{best}")
            lines.append(f"    prompt: {r.prompt}")
        if self.stop_reason:
            lines.append(f"stopped: {self.stop_reason}")
        if self.best is None and self.rounds:
            lines.append("no round could be scored: returning round 0 (the original prompt)")
        return "\n".join(lines)


def best_round(rounds: Sequence[Verdict]) -> int | None:
    """Highest overall; unreadable rounds are never best; ties go to the earlier round."""
    readable = [r for r in rounds if r.overall is not None]
    if not readable:
        return None
    return max(readable, key=lambda r: (r.overall, -r.index)).index


def next_seed(seed: int, policy: str) -> int:
    if policy not in SEED_POLICIES:
        raise ValueError(f"seed policy must be one of {SEED_POLICIES}; got {policy!r}")
    return seed if policy == "same" else (seed + 1) % (2 ** 64)


@dataclass(frozen=True, kw_only=True)
class Rounds:
    """What every critique loop carries between rounds: the history and, per round, the image its
    critique judged best (a batch of 1), every image it made and that critique.

    Immutable: :meth:`add` returns the next state, so a state a host has cached stays as it was. Images
    are whatever the driver makes (ComfyUI IMAGE batches, lists of PIL images): the core only slices
    ``batch[i:i + 1]`` and keeps them.
    """
    history: History = field(default_factory=History)
    kept: tuple[Any, ...] = ()          # per round: the image its critique judged best (a batch of 1)
    batches: tuple[Any, ...] = ()       # per round: every image it made
    critiques: tuple[Critique, ...] = ()  # per round: the critique of the kept image

    def add(self, critiques: Sequence[Critique], batch: Any, rule: StopRule, weights: str | dict[str, float] | None,
            make_round: Callable[..., R]) -> tuple["Rounds", R, int]:
        """One round judged: the best critique of the batch recorded (``make_round(index=..., **verdict)``
        builds the round), the shared stop rules applied. Returns the new state, the round and the pick."""
        if not critiques:
            raise ValueError("a round needs at least one critique")
        pick = rank(critiques, weights)[0].index
        history = self.history.copy()
        rnd = history.add_round(make_round(index=len(history.rounds), **verdict(critiques[pick], rule, weights)))
        history.stop_reason = history.stop_reason_for(rule)
        state = replace(self, history=history, kept=self.kept + (batch[pick:pick + 1],),
                        batches=self.batches + (batch,), critiques=self.critiques + (critiques[pick],))
        return state, rnd, pick

    @property
    def done(self) -> bool:
        """True once a round met a stop condition (``history.stop_reason`` says which)."""
        return bool(self.history.stop_reason)

    @property
    def best_round(self) -> int | None:
        """The best round's index; None when no round could be scored."""
        return self.history.best

    @property
    def result_round(self) -> int:
        """The round a finished loop returns: the best, or round 0 when none could be scored."""
        return self.history.best if self.history.best is not None else 0


@dataclass(frozen=True, kw_only=True)
class LoopState(Rounds):
    """A Generate-Critique-Refine loop between rounds: the value Loop Start hands to the loop body and
    Loop End records the round into (then feeds to the next round's Start, or turns into outputs)."""
    original: str                       # the user's prompt (what refinement protects)
    prompt: str                         # this round's prompt
    seed: int                           # this round's seed
    round: int = 0

    @classmethod
    def start(cls, prompt: str, seed: int) -> "LoopState":
        """Round 0 of a loop."""
        if not prompt.strip():
            raise ValueError("the prompt is empty; type the prompt of the first round")
        return cls(original=prompt, prompt=prompt, seed=seed)

    def record(self, critiques: Sequence[Critique], batch: Any, rule: StopRule, *,
               weights: str | dict[str, float] | None = "equal", mode: str = "merge", keep: str = "",
               seed_policy: str = "same") -> "LoopState":
        """This round judged: its best critique (of the batch) recorded, the stop rule applied, and,
        unless the loop stops, the next round's prompt (the refinement) and seed."""
        state, rnd, pick = self.add(critiques, batch, rule, weights,
                                    lambda **v: Round(prompt=self.prompt, seed=self.seed, **v))
        refinement = refine(critiques[pick], self.original, mode, keep)
        rnd.refined_prompt, rnd.note = refinement.prompt, refinement.note
        seed = next_seed(self.seed, seed_policy)
        state.history.stop_reason = state.history.decide_stop(
            rule, refinement.prompt if refinement.used_refined else None, seed)
        return state if state.done else replace(state, prompt=refinement.prompt, seed=seed, round=rnd.index + 1)
