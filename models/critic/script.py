"""Scripted answers: make the critic write a given text for matching requests.

The text still goes through the model's decoding and the parser (the backend
forces the tokens), so a scripted run exercises the same path as a real one.
Used to replay a saved critique in a workflow and by the tests.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pydantic import BaseModel, ConfigDict, StrictStr, ValidationError, field_validator

from ..judging.rubric import Task

# pointwise/pairwise: critiques; defects: the localisation follow-up; anchored/consistency/projection:
# the three teacher calls of the PARROT data pipeline (parrot.py)
CRITIQUE_MODES = ("pointwise", "pairwise")
MODES = CRITIQUE_MODES + ("defects", "anchored", "consistency", "projection")


@dataclass(frozen=True)
class Rule:
    answer: str
    when_request_contains: str = ""   # empty matches every request
    task: Task | None = None
    mode: str | None = None

    def matches(self, task: Task, mode: str, request: str) -> bool:
        """A rule without a mode answers critiques only: the follow-up and PARROT's calls need their own
        mode, so a critique rule never hijacks them."""
        return ((self.task is None or self.task == Task(task))
                and (self.mode == mode if self.mode is not None else mode in CRITIQUE_MODES)
                and self.when_request_contains.lower() in request.lower())


class RuleSpec(BaseModel):
    """One rule as a script writes it (validated by pydantic; empty task/mode mean "any")."""
    model_config = ConfigDict(extra="forbid")
    answer: StrictStr
    when_request_contains: str = ""
    task: Task | None = None
    mode: str | None = None

    @field_validator("task", "mode", mode="before")
    @classmethod
    def _empty_is_any(cls, value):
        return value or None

    @field_validator("mode")
    @classmethod
    def _known_mode(cls, value):
        if value is not None and value not in MODES:
            raise ValueError("unknown mode")
        return value

    @field_validator("when_request_contains", mode="before")
    @classmethod
    def _as_text(cls, value):
        return str(value)

    def rule(self) -> Rule:
        return Rule(answer=self.answer, when_request_contains=self.when_request_contains, task=self.task,
                    mode=self.mode)


def _rule_error(i: int, entry: object, error: ValidationError) -> ValueError:
    """The first problem of rule ``i`` in the words a script author needs (pydantic's are generic)."""
    problems = {str(e["loc"][0]) if e["loc"] else "": e for e in error.errors()}
    if "answer" in problems or "" in problems:
        return ValueError(f"script rule {i} needs an 'answer' string")
    unknown = sorted(k for k, e in problems.items() if e["type"] == "extra_forbidden")
    if unknown:
        return ValueError(f"script rule {i} has unknown keys {unknown}")
    if "task" in problems:
        return ValueError(f"script rule {i} has task {entry.get('task')!r}; use one of "
                          f"{[t.value for t in Task]} or leave it out")
    if "mode" in problems:
        return ValueError(f"script rule {i} has mode {entry.get('mode')!r}; use one of {', '.join(MODES)}, "
                          "or leave it out")
    return ValueError(f"script rule {i}: {error.errors()[0]['msg']}")


@dataclass(frozen=True)
class AnswerScript:
    rules: tuple[Rule, ...]

    def answer_for(self, task: Task, mode: str, request: str) -> str | None:
        """The answer of the first matching rule (most specific first), else None (decode freely)."""
        for rule in sorted(self.rules, key=lambda r: -len(r.when_request_contains)):
            if rule.matches(task, mode, request):
                return rule.answer
        return None

    @classmethod
    def from_text(cls, text: str) -> "AnswerScript":
        """What the Replay node takes: a pasted critique (plain text) answers every prompt; text that starts
        like JSON (``[``, ``{`` or ``"``) is a list of rules (:meth:`from_json`); empty text scripts nothing."""
        stripped = (text or "").strip()
        if not stripped:
            return cls(())
        if stripped[0] in '[{"':
            return cls.from_json(stripped)
        return cls((Rule(answer=stripped),))

    @classmethod
    def from_json(cls, text: str) -> "AnswerScript":
        """A JSON list of ``{"answer": ..., "when_request_contains": ..., "task": ..., "mode": ...}``
        (a single object or a bare string is accepted too)."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"script is not valid JSON ({e.msg} at line {e.lineno}); expected a list of "
                             '{"answer": "...", "when_request_contains": "..."} objects, or paste the critique '
                             "text alone (not starting with [ or {) to answer every prompt with it") from None
        if isinstance(data, (str, dict)):
            data = [data]
        if not isinstance(data, list):
            raise ValueError("script must be a JSON list of rules")
        rules = []
        for i, entry in enumerate(data):
            if isinstance(entry, str):
                entry = {"answer": entry}
            if not isinstance(entry, dict):
                raise ValueError(f"script rule {i} needs an 'answer' string")
            try:
                rules.append(RuleSpec.model_validate(entry).rule())
            except ValidationError as e:
                raise _rule_error(i, entry, e) from None
        return cls(tuple(rules))
