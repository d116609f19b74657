"""Ranking a batch by its pointwise critiques: the order, and Rank's table as data and as text."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from .critique import Critique
from .rubric import Task, dimensions_for
from .scores import ScoreStatus, overall_label, score_label


@dataclass(frozen=True)
class Ranked:
    index: int            # position in the input batch
    overall: float        # NaN when unreadable
    critique: Critique


def rank(critiques: Sequence[Critique], weights: str | dict[str, float] | None = "equal") -> list[Ranked]:
    """Best first by overall score; unreadable (NaN) last; ties keep the input order."""
    scored = [Ranked(i, c.overall(weights), c) for i, c in enumerate(critiques)]
    return sorted(scored, key=lambda r: (math.isnan(r.overall), -r.overall if not math.isnan(r.overall) else 0.0,
                                         r.index))


def rank_rows(ranked: Sequence[Ranked], task: Task = Task.T2I) -> list[dict]:
    """Rank's table as data (its ``table_json`` output and card rows): rank, input index, overall
    (None when unreadable), each dimension's score (None when N/A or unreadable), warning count."""
    return [{"rank": pos + 1, "index": r.index, "overall": None if math.isnan(r.overall) else r.overall,
             "scores": {d.key: r.critique.dimensions[d.key].to_dict()["score"] for d in dimensions_for(task)},
             "warnings": len(r.critique.warnings)} for pos, r in enumerate(ranked)]


def rank_table(ranked: Sequence[Ranked], task: Task = Task.T2I) -> str:
    """Rank's table as text: a header, then one ``rank | index | overall | scores...`` line per candidate."""
    dims = dimensions_for(task)
    lines = ["rank | index | overall | " + " | ".join(d.title for d in dims)]
    for pos, r in enumerate(ranked):
        scores = []
        for d in dims:
            dim = r.critique.dimensions.get(d.key)
            status = dim.status if dim is not None else ScoreStatus.MISSING
            scores.append(score_label(r.critique.score(d.key), status, ".3f"))
        lines.append(f"{pos + 1} | {r.index} | {overall_label(r.overall)} | " + " | ".join(scores))
    return "\n".join(lines)


def tournament_rows(result) -> list[dict]:
    """Rank's rows in pairwise mode (best first), from a tournament result: each image's bracket wins,
    comparisons and Bradley-Terry score (its ``table_json`` rows and card rows)."""
    return [{"rank": pos + 1, "index": i, "overall": None, "bt": result.bt[i], "wins": result.wins[i],
             "played": result.played[i]} for pos, i in enumerate(result.order)]


def tournament_table(rows: Sequence[dict]) -> str:
    """Rank's table as text in pairwise mode: one ``rank | index | Bradley-Terry | wins / comparisons`` line each."""
    return "\n".join(["rank | index | Bradley-Terry | wins / comparisons"] + [
        f"{r['rank']} | {r['index']} | {r['bt']:+.3f} | {r['wins']:g} / {r['played']}" for r in rows])
