"""Tolerant parser for the critiques RationalRewards writes.

The checkpoints answer in a markdown layout (see ``templates/``). Models drift:
they drop sections, reorder them, bold or bracket scores, write ``3.5/4`` or
prose after a number. The parser reads what it can, records a warning for what
it could not, and never makes a number up. Any ``str`` yields a result; only a
non-string raises :class:`ParseError`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from .critique import (Critique, DimensionResult, PairwiseCritique, PairwiseDimension, ScoreStatus,
                       Winner)
from .rubric import BY_KEY, SCORE_MAX, SCORE_MIN, Dimension, Task, dimensions_for
from ..errors import RationalRewardsError


class ParseError(RationalRewardsError, ValueError):
    """The input cannot be parsed at all (not a string)."""


# --- labels ------------------------------------------------------------------------------------

_SECTION_ALIASES = {
    "analysis": ("user request analysis", "request analysis", "analysis"),
    "judgement": ("detailed judgement", "detailed judgment", "judgement", "judgment"),
    "summary": ("summary", "overall summary"),
    "refinement": ("user request refinement", "request refinement"),
    "comments": ("refinement comments", "refinement comment"),
    "refined": ("refined request", "refined prompt", "refined instruction", "refined user request"),
    "justification": ("justification", "reasoning", "rationale"),
    "score_a": ("score a", "score for image a", "image a score", "score (image a)", "score (a)"),
    "score_b": ("score b", "score for image b", "image b score", "score (image b)", "score (b)"),
    "score": ("score",),
    "winner": ("winner", "overall winner", "better image"),
}
_LABELS: dict[str, str] = {}
for _kind, _names in _SECTION_ALIASES.items():
    for _n in _names:
        _LABELS[_n] = _kind
for _dim in BY_KEY.values():
    for _n in _dim.aliases + (_dim.title.lower(),):
        _LABELS[_n] = "dim:" + _dim.key
# Labels that must be followed by a colon (or be a '#' header) to count: they are common words in prose.
_NEEDS_COLON = {"justification", "score", "score_a", "score_b", "winner", "summary", "analysis"}

_label_alt = "|".join(re.escape(n).replace(r"\ ", r"\s") for n in sorted(_LABELS, key=len, reverse=True))
_HEADER_RE = re.compile(
    r"^(?:[-*>] )?(?P<hash>#{1,6})? ?(?:\*\*|__)? ?(?:(?P<num>\d{1,2}) ?[.)] ?)?(?:\*\*|__)? ?"
    r"(?P<label>" + _label_alt + r")(?!\w) ?(?:\([^)]{0,80}\))? ?(?:\*\*|__)? ?(?P<colon>[:：])? ?(?:\*\*|__)?",
    re.IGNORECASE | re.ASCII)   # ASCII: Unicode case folding ("ſcore") would match labels we cannot look up
_SCORE_RE = re.compile(r"^[\s*_\[\](){}<>\"'`~:=]*(?P<num>[-+]?\d+(?:[.,]\d+)?)(?:\s*/\s*(?P<den>\d+(?:\.\d+)?))?")
_NA_RE = re.compile(r"^[\s*_\[\](){}<>\"'`~:=]*(?:n\s*/\s*a\b|n\.\s*a\b\.?|na\b|not applicable\b|none\b)",
                    re.IGNORECASE)
_SPECIAL_TOKENS_RE = re.compile(r"<\|[a-z_]+\|>")
_MAX_HEADER_SCAN = 240   # a header label sits at the start of a line


@dataclass
class _Field:
    kind: str            # a key of _SECTION_ALIASES or "dim:<key>"
    lines: list[str]     # first line's remainder, then the following lines

    @property
    def text(self) -> str:
        return "\n".join(self.lines).strip()


def _clean(text: str, warnings: list[str] | None = None) -> str:
    """The answer without reasoning blocks, special tokens and a wrapping code fence."""
    if "</think>" in text:
        text = text.rsplit("</think>", 1)[1]
    elif "<think>" in text:   # the budget ran out while the model was still reasoning: no answer yet
        text = text.split("<think>", 1)[0]
        if warnings is not None:
            warnings.append("the answer stops inside its <think> reasoning block (raise max new tokens); "
                            "nothing in the reasoning is read as a score")
    text = _SPECIAL_TOKENS_RE.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    return text.strip().strip("`").strip()


def _match_header(line: str) -> tuple[str, str, bool] | None:
    """Return (kind, remainder of the line, marked) when the line opens a known section.
    ``marked``: written as a header (``#`` or a number), not just ``Label:``."""
    head = " ".join(line[:_MAX_HEADER_SCAN].split())
    if not head:
        return None
    m = _HEADER_RE.match(head)
    if m is None:
        return None
    kind = _LABELS[" ".join(m.group("label").lower().split())]
    rest = head[m.end():]
    if len(line) > _MAX_HEADER_SCAN:   # keep the whole remainder of a long line
        rest += (" " if line[_MAX_HEADER_SCAN - 1].isspace() else "") + line[_MAX_HEADER_SCAN:]
    rest = rest.strip()
    has_colon, has_hash, has_num = bool(m.group("colon")), bool(m.group("hash")), bool(m.group("num"))
    if kind in _NEEDS_COLON and not (has_colon or has_hash):
        return None
    if not (has_colon or has_hash or has_num):
        return None
    if has_num and not has_colon and not has_hash and rest:
        return None   # "1. text faithfulness is fine" is prose, not a header
    return kind, rest, has_hash or has_num


# Inside the refined request a plain "Label:" line is more likely prompt text ("Text rendering: the
# sign reads OPEN") than a new section: only these kinds, or any marked header, end it there.
_ENDS_REFINED = {"analysis", "judgement", "summary", "refinement", "comments"}


def _lines(text: str):
    """Lines, with "Score A: 3 | Score B: 2" (several labelled parts on one line) split into parts."""
    for line in text.split("\n"):
        parts = re.split(r"\s+\|\s+|\s*;\s+", line) if (" | " in line or "; " in line) else [line]
        if len(parts) > 1 and all(_match_header(p) for p in parts):
            yield from parts
        else:
            yield line


def _fields(text: str) -> list[_Field]:
    fields: list[_Field] = []
    for line in _lines(text):
        hit = _match_header(line)
        if hit is not None and fields and fields[-1].kind == "refined" and not hit[2] \
                and hit[0] not in _ENDS_REFINED:
            hit = None
        if hit is not None:
            fields.append(_Field(hit[0], [hit[1]] if hit[1] else []))
        elif fields:
            fields[-1].lines.append(line)
        else:
            fields.append(_Field("preamble", [line]))
    return fields


def _parse_score(raw: str, dim: Dimension, warnings: list[str], who: str = "") -> DimensionResult:
    name = f"{dim.title}{who}"
    result = DimensionResult(key=dim.key, title=dim.title, raw_score=raw.strip()[:200] or None)
    first = raw.strip()
    if _NA_RE.match(first):
        if dim.allows_na:
            result.status = ScoreStatus.NA
        else:
            warnings.append(f"{name}: the model wrote N/A, which this dimension does not allow; score left missing")
        return result
    m = _SCORE_RE.match(first)
    if m is None:
        warnings.append(f"{name}: no number in the score line {first[:60]!r}" if first
                        else f"{name}: score line is empty")
        return result
    value = float(m.group("num").replace(",", "."))   # "3,5" is a decimal comma
    den = m.group("den")
    if den is not None and float(den) != SCORE_MAX:
        warnings.append(f"{name}: score {m.group(0).strip()} is not on the 1-4 scale; score left missing")
        return result
    if value < SCORE_MIN or value > SCORE_MAX:
        clamped = min(max(value, SCORE_MIN), SCORE_MAX)
        warnings.append(f"{name}: score {value:g} is outside 1-4; clamped to {clamped:g}")
        value = clamped
    result.score, result.status = value, ScoreStatus.OK
    return result


_WINNER_NA_RE = re.compile(r"(?:n\s*/\s*a|n\.\s*a\.?|na|not\s+applicable|none)(?![\w/])")
_WINNER_TIE_RE = re.compile(r"(?:it'?s|it\s+is)\s+a\s+(?:tie|draw)\b|(?:a\s+)?(?:tie|draw|equal|neither|both)\b")
_WINNER_CHOICE_RE = re.compile(r"\b(?:image\s*)?[ab]\s+or\s+(?:image\s*)?[ab]\b")


def _parse_winner(raw: str) -> Winner | None:
    """The verdict on a ``Winner:`` line; ``Winner.NA`` for N/A (no winner), None when unreadable."""
    s = raw.strip().lower()
    if not s:
        return None
    # The verdict usually opens the line ("Image B (a sharper result)", "B, by a wide margin"): read it
    # first, so an article "a" in the explanation is not taken for candidate A.
    lead = re.sub(r"^[\s*_\[\](){}<>\"'`~:=]+", "", s)
    if _WINNER_NA_RE.match(lead):
        return Winner.NA            # "N/A" holds an "a": it is never candidate A
    if _WINNER_TIE_RE.match(lead):
        return Winner.TIE
    m = re.match(r"(?:(?:image|candidate|edit)\s*)?([ab])\b(?![./-]\w)"
                 r"(?!\s*(?:and|&|or|vs\.?|=)\s*(?:(?:image|candidate|edit)\s*)?[ab]\b)", lead)
    if m is not None:
        return Winner.A if m.group(1) == "a" else Winner.B
    if _WINNER_CHOICE_RE.search(s):
        return None                 # the skeleton's "[Image A or Image B or It's a tie]" copied, not a verdict
    if re.search(r"\btie\b|\bequal(?:ly)?\b|\bboth\b|\bneither\b", s):
        return Winner.TIE
    s = re.sub(r"\bn\s*/\s*a\b", " ", s)
    has_a = re.search(r"\b(image|candidate|edit)?\s*a\b", s) is not None
    has_b = re.search(r"\b(image|candidate|edit)?\s*b\b", s) is not None
    if has_a and not has_b:
        return Winner.A
    if has_b and not has_a:
        return Winner.B
    return None


class _Assigner:
    """Tracks which dimension the next justification/score belongs to."""

    def __init__(self, task: Task, warnings: list[str]):
        self.expected = dimensions_for(task)
        self.keys = {d.key for d in self.expected}
        self.current: Dimension | None = None
        self.seen_header: set[str] = set()
        self.filled: dict[str, set[str]] = {d.key: set() for d in self.expected}
        self.warnings = warnings
        self.positional = False

    def header(self, key: str) -> None:
        if key not in self.keys:
            self.warnings.append(f"unexpected dimension {BY_KEY[key].title!r} for this task; ignored")
            self.current = None
            self._ignore = True
            return
        self._ignore = False
        self._repeat = key in self.seen_header
        if self._repeat:
            self.warnings.append(f"{BY_KEY[key].title}: appears twice; the first complete entry is kept")
        self.seen_header.add(key)
        self.current = BY_KEY[key]

    _ignore = False
    _repeat = False

    def target(self, part: str) -> Dimension | None:
        """The dimension a ``part`` (justification/score/...) belongs to, or None to drop it."""
        if self._ignore:
            return None
        if self.current is not None and part not in self.filled[self.current.key]:
            return self.current
        if self._repeat:
            return None   # a repeated dimension: its already-filled parts are dropped, not shifted onto others
        # no header (or this one is already filled): fall back to position
        for d in self.expected:
            if part not in self.filled[d.key] and (d.key not in self.seen_header or d is self.current):
                if not self.positional:
                    self.warnings.append("dimension headers missing or garbled; some entries assigned by position")
                    self.positional = True
                self.current = d
                return d
        return None

    def mark(self, d: Dimension, part: str) -> None:
        self.filled[d.key].add(part)


def _check_type(text: object) -> str:
    if not isinstance(text, str):
        raise ParseError(f"critique text must be a string, not {type(text).__name__}")
    return text


def parse_critique(text: str, task: Task | str = Task.T2I) -> Critique:
    """Parse one pointwise critique (T2I or Edit)."""
    raw = _check_type(text)
    task = Task(task)
    warnings: list[str] = []
    dims = {d.key: DimensionResult(key=d.key, title=d.title) for d in dimensions_for(task)}
    crit = Critique(task=task, dimensions=dims, raw=raw, warnings=warnings)
    body = _clean(raw, warnings)
    if not body:
        warnings.append("the critic returned an empty answer")
        for d in dims.values():
            warnings.append(f"{d.title}: no score found")
        return crit
    assign = _Assigner(task, warnings)
    for f in _fields(body):
        if f.kind.startswith("dim:"):
            assign.header(f.kind[4:])
            d = assign.current
            if f.text and d is not None:   # "1. Text Faithfulness: 3.5" or an inline justification
                part = "score" if _SCORE_RE.match(f.text) or _NA_RE.match(f.text) else "justification"
                if part not in assign.filled[d.key]:   # a repeated header keeps the first entry
                    if part == "score":
                        _set_score(dims[d.key], _parse_score(f.text, d, warnings))
                    else:
                        dims[d.key].justification = f.text
                    assign.mark(d, part)
        elif f.kind == "justification":
            d = assign.target("justification")
            if d is not None:
                dims[d.key].justification = f.text or None
                assign.mark(d, "justification")
        elif f.kind in ("score", "score_a", "score_b"):
            d = assign.target("score")
            if d is not None:
                _set_score(dims[d.key], _parse_score(f.text, d, warnings))
                assign.mark(d, "score")
        elif f.kind == "analysis" and crit.request_analysis is None:
            crit.request_analysis = f.text or None
        elif f.kind == "summary" and crit.summary is None:
            crit.summary = f.text or None
        elif f.kind == "comments" and crit.refinement_comments is None:
            crit.refinement_comments = f.text or None
        elif f.kind == "refined" and crit.refined_request is None:
            crit.refined_request = _strip_quotes(f.text) or None
    for d in dims.values():
        if "score" not in assign.filled[d.key]:
            warnings.append(f"{d.title}: no score found")
    if crit.summary is None:
        warnings.append("no Summary section found")
    if crit.refined_request is None:
        warnings.append("no Refined Request found")
    return crit


def parse_pairwise(text: str, task: Task | str = Task.T2I) -> PairwiseCritique:
    """Parse one pairwise comparison (Score A / Score B / Winner per dimension)."""
    raw = _check_type(text)
    task = Task(task)
    warnings: list[str] = []
    dims = {d.key: PairwiseDimension(key=d.key, title=d.title) for d in dimensions_for(task)}
    result = PairwiseCritique(task=task, dimensions=dims, raw=raw, warnings=warnings)
    body = _clean(raw, warnings)
    if not body:
        warnings.append("the critic returned an empty answer")
        return result
    assign = _Assigner(task, warnings)
    for f in _fields(body):
        if f.kind.startswith("dim:"):
            assign.header(f.kind[4:])
        elif f.kind in ("justification", "score_a", "score_b", "winner"):
            d = assign.target(f.kind)
            if d is None:
                continue
            entry = dims[d.key]
            if f.kind == "justification":
                entry.justification = f.text or None
            elif f.kind == "winner":
                entry.stated_winner = _parse_winner(f.text)
                if entry.stated_winner is None:
                    warnings.append(f"{d.title}: unreadable winner {f.text[:40]!r}")
            else:
                who = " (A)" if f.kind == "score_a" else " (B)"
                parsed = _parse_score(f.text, d, warnings, who)
                if f.kind == "score_a":
                    entry.a = parsed
                else:
                    entry.b = parsed
            assign.mark(d, f.kind)
        elif f.kind == "summary" and result.summary is None:
            result.summary = f.text or None
    for entry in dims.values():
        for side, val in (("A", entry.a), ("B", entry.b)):
            if val is None:
                warnings.append(f"{entry.title}: no score for image {side}")
    return result


def _set_score(target: DimensionResult, parsed: DimensionResult) -> None:
    target.score, target.status, target.raw_score = parsed.score, parsed.status, parsed.raw_score


def _strip_quotes(s: str) -> str:
    s = s.strip()
    if len(s) >= 2 and s[0] == s[-1] and s[0] in "\"'`":
        s = s[1:-1].strip()
    return s
