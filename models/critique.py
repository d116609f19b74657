"""Typed results of one critique (pointwise) or one comparison (pairwise).

Scores are floats on the 1–4 scale or ``None``; ``None`` always comes with a
status saying why (the model wrote N/A, or nothing readable was found), so a
missing number is never confused with a real one.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from .rubric import PAIRWISE_NA_VALUE, SCORE_MAX, SCORE_MIN, Task, resolve_weights


class ScoreStatus(str, Enum):
    OK = "ok"            # a number was read
    NA = "n/a"           # the model wrote N/A (allowed for this dimension)
    MISSING = "missing"  # no readable score


# What a score that is not a number is called, per place it is shown. ``None``: the critique has no
# entry at all for that candidate; "aggregate": a total or overall score that could not be formed.
SCORE_STYLES: dict[str, dict[ScoreStatus | None, str]] = {
    "report": {ScoreStatus.NA: "N/A", ScoreStatus.MISSING: "missing", None: "missing"},
    "card": {ScoreStatus.NA: "N/A", ScoreStatus.MISSING: "unreadable", None: "unreadable"},
    "table": {ScoreStatus.NA: "n/a", ScoreStatus.MISSING: "n/a", None: "missing"},
    "aggregate": {ScoreStatus.NA: "n/a", ScoreStatus.MISSING: "n/a", None: "n/a"},
}


def score_label(value: float | None, status: ScoreStatus | None = ScoreStatus.OK, style: str = "card",
                spec: str = ".2f") -> str:
    """How a score reads wherever it is shown: the one function that names a score's state.

    A readable number is formatted with ``spec``; otherwise the state is named for ``style`` (the
    critique text ``report``, the ``card``, the rank/loop/compare ``table`` texts, or an ``aggregate``).
    An OK status without a number (a NaN overall) counts as missing.
    """
    if status is ScoreStatus.OK and value is not None and not math.isnan(value):
        return format(value, spec)
    if style not in SCORE_STYLES:
        raise ValueError(f"unknown score style {style!r}; one of {sorted(SCORE_STYLES)}")
    return SCORE_STYLES[style][ScoreStatus.MISSING if status is ScoreStatus.OK else status]


def overall_label(value: float | None, spec: str = ".3f") -> str:
    """An overall score or total (NaN or None when it could not be formed), as every surface shows it."""
    return score_label(value, ScoreStatus.OK, "aggregate", spec)


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

    def score(self, key: str) -> float:
        dim = self.dimensions.get(key)
        return dim.value if dim is not None else math.nan

    def overall(self, weights: str | dict[str, float] | None = "equal") -> float:
        """Normalised reward in [0, 1]: (weighted mean of non-N/A scores − 1) / 3.

        NaN when a weighted dimension has no readable score (we never average
        around a hole) or when every weighted dimension is N/A.
        """
        w = resolve_weights(weights)
        total = norm = 0.0
        for key, dim in self.dimensions.items():
            weight = w.get(key, 0.0)
            if weight == 0.0 or dim.status is ScoreStatus.NA:
                continue
            if dim.status is ScoreStatus.MISSING:
                return math.nan
            total += weight * dim.value
            norm += weight
        if norm == 0.0:
            return math.nan
        return ((total / norm) - SCORE_MIN) / (SCORE_MAX - SCORE_MIN)

    @property
    def complete(self) -> bool:
        return all(d.status is not ScoreStatus.MISSING for d in self.dimensions.values())

    def to_dict(self, weights: str | dict[str, float] | None = "equal") -> dict[str, Any]:
        overall = self.overall(weights)
        return {"task": self.task.value,
                "dimensions": [d.to_dict() for d in self.dimensions.values()],
                "overall": None if math.isnan(overall) else overall,
                "request_analysis": self.request_analysis, "summary": self.summary,
                "refinement_comments": self.refinement_comments,
                "refined_request": self.refined_request,
                "warnings": list(self.warnings), "raw": self.raw}

    def report(self, weights: str | dict[str, float] | None = "equal") -> str:
        """Human-readable text: warnings first, then scores and justifications."""
        lines = [f"WARNING: {w}" for w in self.warnings]
        for d in self.dimensions.values():
            lines.append(f"{d.title}: {score_label(d.value, d.status, 'report')}")
            if d.justification:
                lines.append(f"  {d.justification}")
        lines.append(f"Overall (0-1): {overall_label(self.overall(weights))}")
        if self.summary:
            lines.append(f"Summary: {self.summary}")
        if self.refinement_comments:
            lines.append(f"Refinement comments: {self.refinement_comments}")
        if self.refined_request:
            lines.append(f"Refined request: {self.refined_request}")
        return "\n".join(lines)


class Winner(str, Enum):
    A = "A"
    B = "B"
    TIE = "tie"
    UNDECIDED = "undecided"   # scores missing: we do not guess


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

    def totals(self) -> tuple[float, float]:
        """Sum of each candidate's scores, N/A counted as 2.5 (the authors' rule); NaN if any is missing."""
        ta = tb = 0.0
        for d in self.dimensions.values():
            va, vb = _pair_value(d.a), _pair_value(d.b)
            if va is None or vb is None:
                return math.nan, math.nan
            ta += va
            tb += vb
        return ta, tb

    @property
    def winner(self) -> Winner:
        ta, tb = self.totals()
        if math.isnan(ta):
            return Winner.UNDECIDED
        return Winner.A if ta > tb else Winner.B if tb > ta else Winner.TIE

    def report(self) -> str:
        """Human-readable comparison (Compare's rationale): warnings, winner and totals, then per dimension
        both scores, its winner and the justification, then the summary."""
        total_a, total_b = self.totals()
        lines = [f"WARNING: {w}" for w in self.warnings]
        lines.append(f"Winner: {self.winner.value} (A {overall_label(total_a)} vs B {overall_label(total_b)})")
        for d in self.dimensions.values():
            sa, sb = (score_label(s.value if s else None, s.status if s else None, "table", ".3f") for s in (d.a, d.b))
            lines.append(f"{d.title}: A {sa} / B {sb} -> {d.winner.value}")
            if d.justification:
                lines.append(f"  {d.justification}")
        if self.summary:
            lines.append(f"Summary: {self.summary}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        ta, tb = self.totals()
        return {"task": self.task.value, "winner": self.winner.value,
                "total_a": None if math.isnan(ta) else ta, "total_b": None if math.isnan(tb) else tb,
                "dimensions": [d.to_dict() for d in self.dimensions.values()],
                "summary": self.summary, "warnings": list(self.warnings), "raw": self.raw}
