"""How far along an answer is, by its sections rather than the token budget.

A critique ends long before its 2048-token budget, so a bar over the budget stops partway and
then jumps to the end. The answer skeleton in the template lists every header the critic is asked
to write (``# Detailed Judgement``, ``## Score:`` ...); counting the headers written so far gives a
fraction that moves with the answer and reaches 1 when the answer ends.
"""
from __future__ import annotations

import re
from typing import Callable, Sequence

HEADER = re.compile(r"^[ \t>*]*#{1,6}[ \t]*\S", re.MULTILINE)
UNFINISHED = 0.98          # the most a still-running answer shows: only its end reaches 1
STARTED = 0.01             # an answer that has begun (text before its first header) moves the bar off 0


def headers_in(text: str) -> int:
    return len(HEADER.findall(text or ""))


class AnswerProgress:
    """Follows the answers of one call (the backends' ``stream``) and reports the mean fraction written.

    ``expected[i]`` is the header count request ``i`` asks for (0: unknown, e.g. a follow-up with no
    skeleton; it then counts as half done until it finishes)."""

    def __init__(self, expected: Sequence[int], report: Callable[[float], None]):
        self.expected = [max(0, int(e)) for e in expected]
        self.done = [0.0] * len(self.expected)
        self.report = report
        self.last = -1.0

    def __call__(self, start: int, texts: Sequence[str], final: bool) -> None:
        for offset, text in enumerate(texts):
            i = start + offset
            if i >= len(self.done):
                break
            if final:
                self.done[i] = 1.0
            elif self.expected[i]:
                self.done[i] = max(self.done[i], STARTED if text else 0.0,
                                   min(UNFINISHED, headers_in(text) / self.expected[i]))
            else:
                self.done[i] = max(self.done[i], 0.5)
        self.emit()

    def finish(self) -> None:
        self.done = [1.0] * len(self.done)
        self.emit()

    def emit(self) -> None:
        fraction = sum(self.done) / len(self.done) if self.done else 1.0
        if fraction != self.last:
            self.last = fraction
            self.report(fraction)
