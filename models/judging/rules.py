"""Scoring rules, decided in one place: how a comparison picks a winner, what an unreadable answer is worth.

Every caller (the Compare and Rank nodes, the CLI, the RL reward adapters, ``rationalrewards eval``)
goes through :func:`decide` and :func:`pointwise_reward`, so a rule cannot mean one thing in a node and
another in an evaluation. Each rule is named after what it does:

Pairwise decision (:class:`DecisionRule`)
    ``published`` (default) -- the authors' ``scoring.py``: each candidate's total is the sum of its
    dimension scores with a missing *or* N/A score counted as 2.5; equal totals are a tie. It always
    decides, and it is the rule behind the published preference accuracies.
    ``strict`` -- N/A still counts 2.5, but one unreadable score makes the comparison ``undecided``.

Pointwise reward for an unreadable answer (:class:`UnreadableReward`)
    The reward is (weighted mean of the non-N/A scores - 1) / 3, in [0, 1]. An answer is unreadable
    when a weighted dimension has no readable score (the mean is never taken around a hole).
    ``nan`` (the nodes) -- such an answer scores NaN, and the critique carries a warning.
    ``zero`` -- it scores 0.0, the authors' RL convention for an answer they cannot parse.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any

from .rubric import PAIRWISE_NA_VALUE, SCORE_MAX, SCORE_MIN, Task, resolve_weights
from .scores import ScoreStatus, Winner

if TYPE_CHECKING:
    from .critique import Critique, DimensionResult, PairwiseCritique

# The authors' ``--fallback-score``: what a missing (published rule) or N/A (both rules) score counts.
FALLBACK_SCORE = PAIRWISE_NA_VALUE


class DecisionRule(str, Enum):
    PUBLISHED = "published"
    STRICT = "strict"


class UnreadableReward(str, Enum):
    NAN = "nan"
    ZERO = "zero"


DEFAULT_DECISION = DecisionRule.PUBLISHED
DEFAULT_UNREADABLE = UnreadableReward.NAN

DECISION_HELP = {
    DecisionRule.PUBLISHED: "published: missing and N/A scores count 2.5, equal totals tie (always decides; "
                            "the authors' rule behind the published accuracies)",
    DecisionRule.STRICT: "strict: N/A counts 2.5; an unreadable score makes the comparison undecided",
}
UNREADABLE_HELP = {
    UnreadableReward.NAN: "nan: an answer with an unreadable score gets no reward (NaN) and a warning",
    UnreadableReward.ZERO: "zero: an answer with an unreadable score gets reward 0.0 (the authors' RL convention)",
}

# Which dimensions a pairwise total sums (the authors' ``--mode``): all, Text Faithfulness only, or the
# visual ones (T2I: Physical Quality; Edit: Image Faithfulness + Physical Quality).
ASPECTS: dict[str, dict[Task, tuple[str, ...] | None]] = {
    "all": {Task.T2I: None, Task.EDIT: None},
    "text": {Task.T2I: ("text_faithfulness",), Task.EDIT: ("text_faithfulness",)},
    "visual": {Task.T2I: ("physical_quality",), Task.EDIT: ("image_faithfulness", "physical_quality")},
}


def _named(kind: type[Enum], value: Any, default: Enum, what: str) -> Any:
    """Validate a rule name (None = the default); the error lists the names that exist."""
    if value is None:
        return default
    try:
        return kind(value)
    except ValueError:
        raise ValueError(f"unknown {what} rule {value!r}; choose one of {[r.value for r in kind]}") from None


def decision_rule(rule: DecisionRule | str | None) -> DecisionRule:
    return _named(DecisionRule, rule, DEFAULT_DECISION, "decision")


def unreadable_rule(rule: UnreadableReward | str | None) -> UnreadableReward:
    return _named(UnreadableReward, rule, DEFAULT_UNREADABLE, "unreadable-answer")


@dataclass(frozen=True)
class Decision:
    """What a comparison decided, under which rule, and which scores the rule had to fill in."""
    winner: "Winner"
    total_a: float            # NaN only under ``strict`` with an unreadable score
    total_b: float
    rule: DecisionRule
    aspects: str
    filled: tuple[str, ...]   # e.g. "Text Rendering (B): N/A counted as 2.5"

    def to_dict(self) -> dict[str, Any]:
        return {"winner": self.winner.value, "rule": self.rule.value, "aspects": self.aspects,
                "total_a": None if math.isnan(self.total_a) else self.total_a,
                "total_b": None if math.isnan(self.total_b) else self.total_b,
                "filled": list(self.filled)}


def _side_value(d: "DimensionResult | None", rule: DecisionRule) -> tuple[float | None, str | None]:
    """(value, why it was filled) of one candidate's score in one dimension; None = unreadable under strict."""
    if d is not None and d.status is ScoreStatus.OK:
        return d.value, None
    if d is not None and d.status is ScoreStatus.NA:
        return FALLBACK_SCORE, "N/A counted as 2.5"
    if rule is DecisionRule.PUBLISHED:
        return FALLBACK_SCORE, "unreadable, counted as 2.5"
    return None, "unreadable"


def decide(pc: "PairwiseCritique", rule: DecisionRule | str | None = None, aspects: str = "all") -> Decision:
    """The winner of a comparison: sum each candidate's scores under ``rule``; higher wins, equal ties."""
    rule = decision_rule(rule)
    if aspects not in ASPECTS:
        raise ValueError(f"unknown aspects {aspects!r}; choose one of {sorted(ASPECTS)}")
    keys = ASPECTS[aspects][pc.task]
    ta = tb = 0.0
    filled: list[str] = []
    undecided = False
    for key, d in pc.dimensions.items():
        if keys is not None and key not in keys:
            continue
        for side, result in (("A", d.a), ("B", d.b)):
            value, why = _side_value(result, rule)
            if why is not None:
                filled.append(f"{d.title} ({side}): {why}")
            if value is None:
                undecided = True
            elif side == "A":
                ta += value
            else:
                tb += value
    if undecided:
        return Decision(Winner.UNDECIDED, math.nan, math.nan, rule, aspects, tuple(filled))
    winner = Winner.A if ta > tb else Winner.B if tb > ta else Winner.TIE
    return Decision(winner, ta, tb, rule, aspects, tuple(filled))


def unreadable(c: "Critique", weights: str | dict[str, float] | None = "equal") -> bool:
    """True when a dimension the weights count has no readable score."""
    w = resolve_weights(weights)
    return any(w.get(key, 0.0) != 0.0 and d.status is ScoreStatus.MISSING for key, d in c.dimensions.items())


def pointwise_reward(c: "Critique", weights: str | dict[str, float] | None = "equal",
                     on_unreadable: UnreadableReward | str | None = None) -> float:
    """(weighted mean of the non-N/A scores - 1) / 3 in [0, 1]; an unreadable answer gets NaN or 0.0.

    When every weighted dimension is N/A there is nothing to average: NaN, or 0.0 under ``zero`` (the
    authors' RL code gives 0.0 whenever it has no score to average).
    """
    on_unreadable = unreadable_rule(on_unreadable)
    if unreadable(c, weights):
        return 0.0 if on_unreadable is UnreadableReward.ZERO else math.nan
    w = resolve_weights(weights)
    total = norm = 0.0
    for key, d in c.dimensions.items():
        weight = w.get(key, 0.0)
        if weight == 0.0 or d.status is not ScoreStatus.OK:
            continue
        total += weight * d.value
        norm += weight
    if norm == 0.0:
        return 0.0 if on_unreadable is UnreadableReward.ZERO else math.nan
    return ((total / norm) - SCORE_MIN) / (SCORE_MAX - SCORE_MIN)
