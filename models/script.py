"""Scripted answers: make the critic write a given text for matching requests.

The text still goes through the model's decoding and the parser (the backend
forces the tokens), so a scripted run exercises the same path as a real one.
Used to replay a saved critique in a workflow and by the tests.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from .rubric import Task

# pointwise/pairwise: critiques; defects: the localisation follow-up; anchored/consistency/projection:
# the three teacher calls of the PARROT data pipeline (parrot.py)
MODES = ("pointwise", "pairwise", "defects", "anchored", "consistency", "projection")


@dataclass(frozen=True)
class Rule:
    answer: str
    when_request_contains: str = ""   # empty matches every request
    task: Task | None = None
    mode: str | None = None

    def matches(self, task: Task, mode: str, request: str) -> bool:
        return ((self.task is None or self.task == Task(task)) and (self.mode is None or self.mode == mode)
                and self.when_request_contains.lower() in request.lower())


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
    def from_json(cls, text: str) -> "AnswerScript":
        """A JSON list of ``{"answer": ..., "when_request_contains": ..., "task": ..., "mode": ...}``
        (a single object or a bare string is accepted too)."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"script is not valid JSON ({e.msg} at line {e.lineno}); expected a list of "
                             '{"answer": "...", "when_request_contains": "..."} objects') from None
        if isinstance(data, (str, dict)):
            data = [data]
        if not isinstance(data, list):
            raise ValueError("script must be a JSON list of rules")
        rules = []
        for i, entry in enumerate(data):
            if isinstance(entry, str):
                entry = {"answer": entry}
            if not isinstance(entry, dict) or not isinstance(entry.get("answer"), str):
                raise ValueError(f"script rule {i} needs an 'answer' string")
            unknown = set(entry) - {"answer", "when_request_contains", "task", "mode"}
            if unknown:
                raise ValueError(f"script rule {i} has unknown keys {sorted(unknown)}")
            task, mode = entry.get("task") or None, entry.get("mode") or None
            if task is not None and task not in [t.value for t in Task]:
                raise ValueError(f"script rule {i} has task {task!r}; use one of "
                                 f"{[t.value for t in Task]} or leave it out")
            if mode is not None and mode not in MODES:
                raise ValueError(f"script rule {i} has mode {mode!r}; use one of {', '.join(MODES)}, "
                                 "or leave it out")
            rules.append(Rule(answer=entry["answer"],
                              when_request_contains=str(entry.get("when_request_contains", "")),
                              task=Task(task) if task else None, mode=mode))
        return cls(tuple(rules))
