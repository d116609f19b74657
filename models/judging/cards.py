"""What the critique card shows: every node's ``ui`` payload, built from the core's typed results.

One module for the five cards (``rr_critiques``, ``rr_compare``, ``rr_rank``, ``rr_loop``, ``rr_repair``), so a
score reads the same everywhere: the names of non-numeric scores come from
:func:`rationalrewards.judging.critique.score_label` (sent as ``labels``), and the loop's prompt diff is
computed here with :mod:`difflib`. The browser's card (``web/rr_card_dom.js``) only renders what
these functions return. Plain JSON-able dicts; no ComfyUI import (thumbnails are the node's part).
"""
from __future__ import annotations

import difflib
import json
import math
import re
from typing import Any, Sequence

from .ranking import Ranked
from .critique import Critique, PairwiseCritique, ScoreStatus, score_label
from .loop import History
from .rubric import BY_KEY

Weights = str | dict[str, float] | None
_WORDS = re.compile(r"(\s+)")


def card_labels() -> dict[str, str]:
    """How the card names a score that is not a number, by status (``overall``: a missing aggregate)."""
    return {ScoreStatus.NA.value: score_label(None, ScoreStatus.NA),
            ScoreStatus.MISSING.value: score_label(None, ScoreStatus.MISSING),
            "overall": score_label(None, ScoreStatus.MISSING)}


def unreadable_advice(raw: str, warnings: Sequence[str]) -> str:
    """One line of what to try when part of an answer could not be read (shown under the card's warnings)."""
    if not raw.strip():
        return ("The critic wrote nothing: check that 'critic model' is a RationalRewards checkpoint (or that the "
                "server answers), then run again.")
    if any("<think>" in w for w in warnings):
        return "The answer was cut off while the critic was thinking: raise 'max answer length (tokens)'."
    if "score" not in raw.lower():
        return ("The critic did not answer in the critique layout: use a RationalRewards checkpoint (an untrained "
                "model or an edited template may answer freely), or set 'randomness (temperature)' to 0.")
    return ("Part of the answer could not be read: if it stops mid-sentence, raise 'max answer length (tokens)'; "
            "otherwise set 'randomness (temperature)' to 0 and run again.")


def _answer_fields(raw: str, warnings: Sequence[str], readable: bool) -> dict[str, Any]:
    """The raw answer and the advice for an answer that could not be fully read; nothing extra otherwise."""
    return {"raw": None} if readable else {"raw": raw, "advice": unreadable_advice(raw, warnings)}


def critique_entry(critique: Critique, weights: Weights = "equal", prompt: str | None = None) -> dict[str, Any]:
    """One pointwise critique as the card shows it (``Critique.to_dict``; the raw answer and one line of
    advice only when a score could not be read, so the card can show what the critic actually wrote)."""
    entry = critique.to_dict(weights) | _answer_fields(critique.raw, critique.warnings, critique.complete)
    if prompt is not None:
        entry["prompt"] = prompt
    return entry | {"labels": card_labels()}


def critiques_card(critiques: Sequence[Critique], prompts: Sequence[str], weights: Weights = "equal") -> dict:
    """``ui`` of Critique Image / Critique Edit: one entry per image."""
    return {"rr_critiques": [critique_entry(c, weights, p) for c, p in zip(critiques, prompts)]}


def compare_data(result: PairwiseCritique, prompt: str, rule: str | None = None) -> dict[str, Any]:
    """The comparison as data (Compare's ``dimensions_json`` output and its card entry), decided by ``rule``."""
    return result.to_dict(rule) | {"raw": None, "prompt": prompt}


def compare_card(result: PairwiseCritique, prompt: str, rule: str | None = None) -> dict:
    """``ui`` of Compare (the node adds the A/B thumbnails; the raw answer and advice when a score is unreadable)."""
    readable = all(s is not None and s.status is not ScoreStatus.MISSING
                   for d in result.dimensions.values() for s in (d.a, d.b))
    return {"rr_compare": [compare_data(result, prompt, rule) | _answer_fields(result.raw, result.warnings, readable)
                           | {"labels": card_labels()}]}


def clear_best(ranked: Sequence[Ranked]) -> bool:
    """Whether the first candidate scored strictly better than the second (a tie, or no readable score,
    has no single best: the order then only keeps the input order)."""
    if len(ranked) < 2:
        return len(ranked) == 1 and not math.isnan(ranked[0].overall)
    first, second = ranked[0].overall, ranked[1].overall
    return not math.isnan(first) and (math.isnan(second) or first > second)


def rank_card(ranked: Sequence[Ranked], rows: list[dict], prompt: str, weights: Weights = "equal") -> dict:
    """``ui`` of Rank: the table rows (best first), each candidate's critique in the same order, and
    whether there is a single best (``clear_best``: the card outlines #1 only then)."""
    return {"rr_rank": [{"prompt": prompt, "rows": rows, "clear_best": clear_best(ranked),
                         "critiques": [critique_entry(r.critique, weights) for r in ranked],
                         "labels": card_labels()}]}


def tournament_card(rows: list[dict], prompt: str, comparisons: int) -> dict:
    """``ui`` of Rank in pairwise mode: the rows of :func:`tournament_rows`; no pointwise critiques."""
    return {"rr_rank": [{"prompt": prompt, "rows": rows, "critiques": [], "mode": "pairwise",
                         "comparisons": comparisons, "labels": card_labels()}]}


def word_diff(before: str, after: str) -> list[dict[str, str]]:
    """Word-level diff of two prompts for display: ``[{"op": "same"|"add"|"del", "text": ...}]``,
    white space kept, neighbouring parts of one kind merged."""
    a, b = _WORDS.split(before), _WORDS.split(after)
    out: list[dict[str, str]] = []

    def push(op: str, parts: list[str]) -> None:
        text = "".join(parts)
        if not text:
            return
        if out and out[-1]["op"] == op:
            out[-1]["text"] += text
        else:
            out.append({"op": op, "text": text})
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag == "equal":
            push("same", a[i1:i2])
        else:
            push("del", a[i1:i2])
            push("add", b[j1:j2])
    return out


def _rounds_entry(history: History, critiques: Sequence[Critique]) -> dict[str, Any]:
    """A loop's history as a card entry: the rounds, dimension titles and each round's score statuses
    (the round scores are None for both N/A and unreadable)."""
    return json.loads(history.to_json()) | {
        "titles": {k: BY_KEY[k].title for k in (critiques[-1].dimensions if critiques else {})},
        "statuses": [{k: d.status.value for k, d in c.dimensions.items()} for c in critiques],
        "labels": card_labels()}


def loop_card(history: History, critiques: Sequence[Critique]) -> dict:
    """``ui`` of Refine Loop End: the history with each round's prompt diff against the round before."""
    prompts = [r.prompt for r in history.rounds]
    entry = _rounds_entry(history, critiques) | {
        "diffs": [None] + [word_diff(a, b) for a, b in zip(prompts, prompts[1:])]}
    return {"rr_loop": [entry]}


def repair_card(history: History, critiques: Sequence[Critique], thumbs: Sequence[dict | None]) -> dict:
    """``ui`` of Repair Loop End: every round (phrases, masked area, overall before and after, why it
    stopped) and per round the image refs the node saved (``thumbs``: ``mask``, the round's mask over the
    image it repaired, and ``image``, what came out; None for a round without images)."""
    return {"rr_repair": [_rounds_entry(history, critiques) | {"thumbs": list(thumbs)}]}
