"""Rank candidates by pairwise comparisons: a merge-sort tournament and Bradley-Terry scores.

Preference benchmarks are pairwise and the critic is strongest there, so ranking N images by
comparing them beats scoring each alone. A bottom-up merge sort needs at most N*ceil(log2 N)
comparisons (instead of N(N-1)/2 for a round robin) and, with a consistent judge, gives the exact
order. The merges of one level advance in lockstep, so each step is one batch of comparisons
(served concurrently by a server or batched by an in-process critic).

* The starting order is shuffled with ``seed``: the bracket does not favour the input order, and the
  same seed gives the same bracket, comparisons and result.
* ``both_orders`` judges every pair as (A, B) and (B, A) and averages the two verdicts, which cancels
  the judge's position bias (twice the comparisons).
* A tie keeps the earlier candidate of the bracket first; an undecided comparison counts as a tie.
* Every comparison made also feeds a Bradley-Terry model (fitted by Hunter's MM algorithm, ties as
  half a win, with one virtual tie against an average opponent so an unbeaten image gets a finite
  score). ``bt`` is its log-strength (0 = average); ``wins`` counts the comparisons each image won.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Callable, Sequence

from ..judging.rubric import Task
from ..judging.rules import decide, decision_rule
from .critic import Item

# compare(pairs) -> for each (i, j): 1.0 = i better, 0.0 = j better, 0.5 = tie, None = undecided
CompareFn = Callable[[list[tuple[int, int]]], list[float | None]]


@dataclass(frozen=True)
class Match:
    first: int          # shown as image A
    second: int         # shown as image B
    result: float | None    # for ``first``: 1 win, 0 loss, 0.5 tie, None undecided


@dataclass
class TournamentResult:
    order: list[int]                 # candidate indices, best first
    bt: list[float]                  # Bradley-Terry log-strength per candidate (input order)
    wins: list[float]                # comparisons won per candidate (a tie counts 0.5)
    played: list[int]                # comparisons each candidate took part in
    matches: list[Match] = field(default_factory=list)   # every comparison, in the order they were made
    seed: int = 0
    both_orders: bool = False

    @property
    def comparisons(self) -> int:
        return len(self.matches)

    def to_dict(self) -> dict:
        return {"order": self.order, "bt": self.bt, "wins": self.wins, "played": self.played,
                "comparisons": self.comparisons, "seed": self.seed, "both_orders": self.both_orders,
                "matches": [{"a": m.first, "b": m.second, "result_a": m.result} for m in self.matches]}


def max_comparisons(n: int, both_orders: bool = False) -> int:
    """The most comparisons :func:`merge_tournament` makes for ``n`` candidates."""
    return (2 if both_orders else 1) * (n * math.ceil(math.log2(n)) if n > 1 else 0)


@dataclass
class _Merge:
    left: list[int]
    right: list[int]
    out: list[int] = field(default_factory=list)
    li: int = 0
    ri: int = 0

    @property
    def active(self) -> bool:
        return self.li < len(self.left) and self.ri < len(self.right)

    def finish(self) -> list[int]:
        return self.out + self.left[self.li:] + self.right[self.ri:]


def merge_tournament(n: int, compare: CompareFn, *, seed: int = 0, both_orders: bool = False) -> TournamentResult:
    """Sort ``n`` candidates best first with batched pairwise comparisons (see module docstring)."""
    if n < 0:
        raise ValueError("n must be >= 0")
    order = list(range(n))
    random.Random(seed).shuffle(order)
    matches: list[Match] = []
    runs = [[i] for i in order]
    while len(runs) > 1:
        merges = [_Merge(runs[k], runs[k + 1]) for k in range(0, len(runs) - 1, 2)]
        leftover = [runs[-1]] if len(runs) % 2 else []
        while True:
            active = [m for m in merges if m.active]
            if not active:
                break
            pairs = [(m.left[m.li], m.right[m.ri]) for m in active]
            for m, score in zip(active, _judge(pairs, compare, both_orders, matches)):
                if score is None or score >= 0.5:      # left wins or ties (stable), undecided = tie
                    m.out.append(m.left[m.li])
                    m.li += 1
                else:
                    m.out.append(m.right[m.ri])
                    m.ri += 1
        runs = [m.finish() for m in merges] + leftover
    ranked = runs[0] if runs else []
    wins, played = [0.0] * n, [0] * n
    for m in matches:
        if m.result is None:
            continue
        played[m.first] += 1
        played[m.second] += 1
        wins[m.first] += m.result
        wins[m.second] += 1.0 - m.result
    return TournamentResult(ranked, bradley_terry(n, matches), wins, played, matches, seed, both_orders)


def _judge(pairs: list[tuple[int, int]], compare: CompareFn, both_orders: bool,
           matches: list[Match]) -> list[float | None]:
    asked = pairs + ([(j, i) for i, j in pairs] if both_orders else [])
    results = list(compare(asked))
    if len(results) != len(asked):
        raise ValueError(f"compare returned {len(results)} results for {len(asked)} pairs")
    matches.extend(Match(i, j, r) for (i, j), r in zip(asked, results))
    if not both_orders:
        return results[:len(pairs)]
    combined = []
    for k in range(len(pairs)):
        fwd, rev = results[k], results[k + len(pairs)]
        seen = [x for x in (fwd, None if rev is None else 1.0 - rev) if x is not None]
        combined.append(sum(seen) / len(seen) if seen else None)
    return combined


def bradley_terry(n: int, matches: Sequence[Match], *, prior: float = 1.0, iterations: int = 2000,
                  tol: float = 1e-10) -> list[float]:
    """Log-strengths (mean 0) from the decided matches; ``prior`` virtual ties against an average opponent."""
    if n == 0:
        return []
    wins = [prior / 2.0] * n
    games: list[dict[int, float]] = [dict() for _ in range(n)]
    for m in matches:
        if m.result is None or m.first == m.second:
            continue
        wins[m.first] += m.result
        wins[m.second] += 1.0 - m.result
        games[m.first][m.second] = games[m.first].get(m.second, 0.0) + 1.0
        games[m.second][m.first] = games[m.second].get(m.first, 0.0) + 1.0
    p = [1.0] * n
    for _ in range(iterations):
        new = []
        for i in range(n):
            denom = prior / (p[i] + 1.0) + sum(c / (p[i] + p[j]) for j, c in games[i].items())
            new.append(wins[i] / denom)
        g = math.exp(sum(math.log(x) for x in new) / n)
        new = [x / g for x in new]
        delta = max(abs(math.log(a) - math.log(b)) for a, b in zip(new, p))
        p = new
        if delta < tol:
            break
    return [math.log(x) for x in p]


WINNER_SCORE = {"A": 1.0, "B": 0.0, "tie": 0.5}


def pairwise_rank(critic, images: Sequence, prompt: str, options=None, *, source=None, seed: int = 0,
                  both_orders: bool = False, rule=None, progress=None, should_stop=None, answer_progress=None):
    """Rank ``images`` (PIL images or ComfyUI image tensors) for ``prompt`` (an edit of ``source`` when given)
    by a merge tournament of pairwise critiques, each match decided by ``rules.decide`` under ``rule`` (the
    Compare node's rule).
    Returns the :class:`TournamentResult` and the parsed comparisons, one per match."""
    rule = decision_rule(rule)

    task = Task.EDIT if source is not None else Task.T2I
    critiques = []

    def compare(pairs: list[tuple[int, int]]) -> list[float | None]:
        items = [Item(task, "pairwise", prompt, (images[i], images[j]) if source is None
                      else (source, images[i], images[j])) for i, j in pairs]
        parsed = critic.judge(items, options, progress=progress, should_stop=should_stop,
                              answer_progress=answer_progress)
        critiques.extend(parsed)
        return [WINNER_SCORE.get(decide(pc, rule).winner.value) for pc in parsed]   # undecided -> None

    return merge_tournament(len(images), compare, seed=seed, both_orders=both_orders), critiques


__all__ = ["CompareFn", "Match", "TournamentResult", "bradley_terry", "max_comparisons", "merge_tournament", "pairwise_rank"]
