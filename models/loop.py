"""Generate-Critique-Refine bookkeeping: the stop rule, keep-the-best and the round history.

Pure data logic, shared by the ComfyUI loop nodes and headless drivers. As published,
a result is "good" when Text Faithfulness and Physical Quality are both >= 3.0, and the
loop reruns with the refined request and the same seed. Several rounds, a stop when the
score stops improving, and keeping the best round are our additions.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

from .critique import Critique, ScoreStatus

DEFAULT_STOP_DIMENSIONS = ("text_faithfulness", "physical_quality")
SEED_POLICIES = ("same", "increment")


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


@dataclass
class Round:
    index: int
    prompt: str
    seed: int
    overall: float | None            # None when the critique could not be read
    scores: dict[str, float | None]
    good: bool
    warnings: list[str] = field(default_factory=list)
    refined_prompt: str | None = None
    note: str = ""


@dataclass
class History:
    rounds: list[Round] = field(default_factory=list)
    stop_reason: str = ""
    best: int | None = None          # index of the best round; None if no round was readable

    def add(self, critique: Critique, prompt: str, seed: int, rule: StopRule, weights: str = "equal") -> Round:
        overall = critique.overall(weights)
        rnd = Round(index=len(self.rounds), prompt=prompt, seed=seed,
                    overall=None if math.isnan(overall) else overall,
                    scores={k: (None if math.isnan(d.value) else d.value) for k, d in critique.dimensions.items()},
                    good=rule.is_good(critique), warnings=list(critique.warnings))
        self.rounds.append(rnd)
        self.best = best_round(self.rounds)
        return rnd

    def decide_stop(self, rule: StopRule, next_prompt: str | None, next_seed: int) -> str:
        """Why to stop after the latest round, or '' to go on."""
        last = self.rounds[-1]
        if last.good:
            return f"round {last.index} meets the stop rule ({' and '.join(rule.dimensions)} >= {rule.threshold:g})"
        if len(self.rounds) >= rule.max_rounds:
            return f"reached the maximum of {rule.max_rounds} round(s)"
        if rule.stop_when_no_improvement and len(self.rounds) >= 2:
            previous = [r.overall for r in self.rounds[:-1] if r.overall is not None]
            if last.overall is not None and previous and last.overall <= max(previous):
                return f"round {last.index} did not improve on the best score ({max(previous):.3f})"
        if next_prompt is None or (next_prompt == last.prompt and next_seed == last.seed):
            return "the critic proposed no change to the prompt, so another round would repeat this one"
        return ""

    def to_json(self) -> str:
        return json.dumps({"rounds": [asdict(r) for r in self.rounds], "best": self.best,
                           "stop_reason": self.stop_reason}, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> "History":
        data = json.loads(text)
        return cls(rounds=[Round(**r) for r in data["rounds"]], stop_reason=data.get("stop_reason", ""),
                   best=data.get("best"))

    def table(self) -> str:
        lines = []
        for r in self.rounds:
            score = "n/a" if r.overall is None else f"{r.overall:.3f}"
            best = "  <- best" if r.index == self.best else ""     # plain text: PreviewAny renders markdown
            lines.append(f"round {r.index}: overall {score}{' (good)' if r.good else ''} seed {r.seed}{best}")
            lines.append(f"    prompt: {r.prompt}")
        if self.stop_reason:
            lines.append(f"stopped: {self.stop_reason}")
        if self.best is None and self.rounds:
            lines.append("no round could be scored: returning round 0 (the original prompt)")
        return "\n".join(lines)


def best_round(rounds: list[Round]) -> int | None:
    """Highest overall; unreadable rounds are never best; ties go to the earlier round."""
    readable = [r for r in rounds if r.overall is not None]
    if not readable:
        return None
    return max(readable, key=lambda r: (r.overall, -r.index)).index


def next_seed(seed: int, policy: str) -> int:
    if policy not in SEED_POLICIES:
        raise ValueError(f"seed policy must be one of {SEED_POLICIES}; got {policy!r}")
    return seed if policy == "same" else (seed + 1) % (2 ** 64)
