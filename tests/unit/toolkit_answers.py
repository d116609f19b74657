"""Scripted critic answers for the headless toolkit tests (manifest, reward, eval, tournament).

Every prompt in these tests carries a tag such as ``item-7``; the fake server (or a replay rule)
answers from a table keyed by that tag, so the correct scores, rewards and accuracies are known.
"""
from __future__ import annotations

import re

from rationalrewards.judging.rubric import Task, dimensions_for

TAG = re.compile(r"item-(\d+)")


def pointwise_answer(scores: dict[str, float | str], task: Task | str = Task.T2I) -> str:
    """An answer in the published layout; a score may be a number, ``"N/A"``, or ``None`` (left out)."""
    lines = ["# User Request Analysis", "The request.", "# Detailed Judgement"]
    for n, dim in enumerate(dimensions_for(task), 1):
        lines += [f"{n}. {dim.title}:", "## Justification: looked at it."]
        value = scores.get(dim.key, "N/A" if dim.allows_na else 3.0)
        if value is not None:
            lines.append(f"## Score: {value}")
    lines += ["# Summary: fine.", "# User Request Refinement:", "## Refinement Comments: none.",
              "## Refined Request: a better prompt"]
    return "\n".join(lines)


def pairwise_answer(a: dict[str, float | str | None], b: dict[str, float | str | None],
                    task: Task | str = Task.T2I) -> str:
    lines = ["# User Request Analysis", "The request.", "# Detailed Judgement"]
    for n, dim in enumerate(dimensions_for(task), 1):
        lines += [f"{n}. {dim.title}:", "## Justification: compared."]
        for label, scores in (("A", a), ("B", b)):
            value = scores.get(dim.key, "N/A" if dim.allows_na else 3.0)
            if value is not None:
                lines.append(f"## Score {label}: {value}")
    lines.append("# Summary: compared.")
    return "\n".join(lines)


def request_text(body: dict) -> str:
    """All text parts a chat-completions request carries."""
    out = []
    for m in body["messages"]:
        content = m["content"]
        out.extend([content] if isinstance(content, str) else [p.get("text", "") for p in content])
    return "\n".join(out)


def tag_of(body: dict) -> int:
    m = TAG.search(request_text(body))
    assert m, "test prompts carry an item-N tag"
    return int(m.group(1))
