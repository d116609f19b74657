"""The shared terms of judging: a score's state, a comparison's winner, and how either reads.

They sit at the bottom of ``judging/`` so the results (``critique.py``) and the rules that score them
(``rules.py``) can both use them without importing each other.
"""
from __future__ import annotations

import math
from enum import Enum


class ScoreStatus(str, Enum):
    OK = "ok"            # a number was read
    NA = "n/a"           # the model wrote N/A (allowed for this dimension)
    MISSING = "missing"  # no readable score


# What a score that is not a number is called, on every surface (critique text, card, Rank/Compare/loop
# tables, CLI): the model wrote N/A, or nothing readable was found (``None``: the critique has no entry
# at all for that candidate). The JSON ``status`` field keeps its machine keys (ok / n/a / missing).
SCORE_STATE_LABELS: dict[ScoreStatus | None, str] = {
    ScoreStatus.NA: "N/A", ScoreStatus.MISSING: "unreadable", None: "unreadable"}


def score_label(value: float | None, status: ScoreStatus | None = ScoreStatus.OK, spec: str = ".2f") -> str:
    """How a score reads wherever it is shown: the one function that names a score's state.

    A readable number is formatted with ``spec``; otherwise ``N/A`` or ``unreadable``. An OK status
    without a number (a NaN overall or total that could not be formed) reads ``unreadable``.
    """
    if status is ScoreStatus.OK and value is not None and not math.isnan(value):
        return format(value, spec)
    return SCORE_STATE_LABELS[ScoreStatus.MISSING if status is ScoreStatus.OK else status]


def overall_label(value: float | None, spec: str = ".3f") -> str:
    """An overall score or total (NaN or None when it could not be formed), as every surface shows it."""
    return score_label(value, ScoreStatus.OK, spec)


class Winner(str, Enum):
    A = "A"
    B = "B"
    TIE = "tie"
    UNDECIDED = "undecided"   # scores missing: we do not guess
    NA = "N/A"                # a dimension's "Winner: N/A" (nothing to judge, e.g. no text asked for)
