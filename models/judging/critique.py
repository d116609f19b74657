"""Typed results of one critique (pointwise) or one comparison (pairwise).

Scores are floats on the 1–4 scale or ``None``; ``None`` always comes with a
status saying why (the model wrote N/A, or nothing readable was found), so a
missing number is never confused with a real one.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from .rubric import PAIRWISE_NA_VALUE, Task
from .rules import DECISION_HELP, decide, pointwise_reward, unreadable_rule
from .scores import SCORE_STATE_LABELS, ScoreStatus, Winner, overall_label, score_label  # noqa: F401 (re-exported)


@dataclass
class DimensionResult:
    key: str
    title: str
    justification: str | None = None
    score: float | None = None
    status: ScoreStatus = ScoreStatus.MISSING
    raw_score: str | None = None     # the score text as the model wrote it

    @property
    def value(self) -> float:
        """The score as a float; NaN when N/A or missing."""
        return self.score if self.status is ScoreStatus.OK and self.score is not None else math.nan

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "title": self.title, "justification": self.justification,
                "score": self.score if self.status is ScoreStatus.OK else None,
                "status": self.status.value, "raw_score": self.raw_score}


@dataclass
class Critique:
    """One parsed pointwise critique."""
    task: Task
    dimensions: dict[str, DimensionResult]
    request_analysis: str | None = None
    summary: str | None = None
    refinement_comments: str | None = None
    refined_request: str | None = None
    raw: str = ""
    warnings: list[str] = field(default_factory=list)
    record: dict[str, Any] = field(default_factory=dict)   # template {name, hash, source}, image_size

    def score(self, key: str) -> float:
        dim = self.dimensions.get(key)
        return dim.value if dim is not None else math.nan

    def overall(self, weights: str | dict[str, float] | None = "equal",
                on_unreadable: str | None = None) -> float:
        """Normalised reward in [0, 1]: (weighted mean of non-N/A scores − 1) / 3.

        An answer with an unreadable weighted score gets NaN (or 0.0 with ``on_unreadable="zero"``):
        we never average around a hole. The rule lives in :mod:`rationalrewards.judging.rules`.
        """
        return pointwise_reward(self, weights, on_unreadable)

    @property
    def complete(self) -> bool:
        return all(d.status is not ScoreStatus.MISSING for d in self.dimensions.values())

    def to_dict(self, weights: str | dict[str, float] | None = "equal",
                on_unreadable: str | None = None) -> dict[str, Any]:
        rule = unreadable_rule(on_unreadable)
        overall = self.overall(weights, rule)
        return {"task": self.task.value,
                "dimensions": [d.to_dict() for d in self.dimensions.values()],
                "overall": None if math.isnan(overall) else overall,
                "reward_rule": {"weights": weights if isinstance(weights, str) or weights is None else dict(weights),
                                "unreadable": rule.value},
                "request_analysis": self.request_analysis, "summary": self.summary,
                "refinement_comments": self.refinement_comments,
                "refined_request": self.refined_request,
                "warnings": list(self.warnings), "raw": self.raw,
                **record_fields(self.record)}

    def report(self, weights: str | dict[str, float] | None = "equal") -> str:
        """Human-readable text: warnings first, then scores and justifications."""
        lines = [f"WARNING: {w}" for w in self.warnings]
        for d in self.dimensions.values():
            lines.append(f"{d.title}: {score_label(d.value, d.status)}")
            if d.justification:
                lines.append(f"  {d.justification}")
        lines.append(f"Overall (0-1): {overall_label(self.overall(weights))}")
        if self.summary:
            lines.append(f"Summary: {self.summary}")
        if self.refinement_comments:
            lines.append(f"Refinement comments: {self.refinement_comments}")
        if self.refined_request:
            lines.append(f"Refined request: {self.refined_request}")
        lines += record_lines(self.record)
        return "\n".join(lines)


@dataclass
class PairwiseDimension:
    key: str
    title: str
    justification: str | None = None
    a: DimensionResult | None = None
    b: DimensionResult | None = None
    stated_winner: Winner | None = None   # what the model wrote on its Winner line

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "title": self.title, "justification": self.justification,
                "a": self.a.to_dict() if self.a else None, "b": self.b.to_dict() if self.b else None,
                "winner": self.winner.value}

    @property
    def winner(self) -> Winner:
        """Per-dimension winner: the model's Winner line, else the higher score."""
        if self.stated_winner is not None:
            return self.stated_winner
        va, vb = _pair_value(self.a), _pair_value(self.b)
        if va is None or vb is None:
            return Winner.UNDECIDED
        return Winner.A if va > vb else Winner.B if vb > va else Winner.TIE


def _pair_value(d: DimensionResult | None) -> float | None:
    if d is None or d.status is ScoreStatus.MISSING:
        return None
    return PAIRWISE_NA_VALUE if d.status is ScoreStatus.NA else d.value


@dataclass
class PairwiseCritique:
    """One parsed comparison of candidates A and B."""
    task: Task
    dimensions: dict[str, PairwiseDimension]
    summary: str | None = None
    raw: str = ""
    warnings: list[str] = field(default_factory=list)
    record: dict[str, Any] = field(default_factory=dict)   # template {name, hash, source}, image_size

    def decide(self, rule: str | None = None, aspects: str = "all"):
        """The comparison's :class:`~rationalrewards.judging.rules.Decision` under a decision rule (default published)."""
        return decide(self, rule, aspects)

    def totals(self, rule: str | None = None) -> tuple[float, float]:
        """Sum of each candidate's scores under ``rule`` (published: missing and N/A count 2.5; strict: NaN
        when a score is unreadable)."""
        d = self.decide(rule)
        return d.total_a, d.total_b

    @property
    def winner(self) -> Winner:
        """The winner under the default (published) rule; ``decide(rule)`` for another."""
        return self.decide().winner

    def report(self, rule: str | None = None) -> str:
        """Human-readable comparison (Compare's rationale): warnings, winner and totals under the decision
        rule (and the scores it filled in), then per dimension both scores, its winner and the justification,
        then the summary."""
        decision = self.decide(rule)
        lines = [f"WARNING: {w}" for w in self.warnings]
        lines.append(f"Winner: {decision.winner.value} (A {overall_label(decision.total_a)} vs B "
                     f"{overall_label(decision.total_b)})")
        lines.append(f"Decision rule: {DECISION_HELP[decision.rule]}")
        lines += [f"  {f}" for f in decision.filled]
        for d in self.dimensions.values():
            sa, sb = (score_label(s.value if s else None, s.status if s else None, ".3f") for s in (d.a, d.b))
            lines.append(f"{d.title}: A {sa} / B {sb} -> {d.winner.value}")
            if d.justification:
                lines.append(f"  {d.justification}")
        if self.summary:
            lines.append(f"Summary: {self.summary}")
        lines += record_lines(self.record)
        return "\n".join(lines)

    def to_dict(self, rule: str | None = None) -> dict[str, Any]:
        decision = self.decide(rule)
        return {"task": self.task.value, "winner": decision.winner.value,
                "total_a": decision.to_dict()["total_a"], "total_b": decision.to_dict()["total_b"],
                "decision": decision.to_dict(),
                "dimensions": [d.to_dict() for d in self.dimensions.values()],
                "summary": self.summary, "warnings": list(self.warnings), "raw": self.raw,
                **record_fields(self.record)}


def record_fields(record: dict[str, Any]) -> dict[str, Any]:
    """A critique's record as flat JSON fields: template name, hash and source, and the image size."""
    out: dict[str, Any] = {}
    tpl = record.get("template")
    if tpl:      # a critique parsed from saved text has no record: nothing is claimed about its template
        out |= {"template": tpl.get("name"), "template_hash": tpl.get("hash"), "template_source": tpl.get("source")}
    if record.get("image_size"):
        out["image_size"] = record["image_size"]
    return out


def record_lines(record: dict[str, Any]) -> list[str]:
    """The closing lines of a critique text: which template produced it, at which image size."""
    lines = []
    tpl = record.get("template")
    if tpl:
        lines.append(f"Template: {tpl['name']} ({tpl['source']}, {tpl['hash']})")
    size = record.get("image_size")
    if size:
        px = size.get("max_pixels")
        lines.append(f"Image size: {'up to ' + format(px, ',') + ' px' if px else 'as the processor decides'}"
                     f" ({size.get('source')})")
    return lines
