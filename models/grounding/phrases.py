"""Defect phrases: short referring expressions for the flawed regions of an image.

A phrase is what a detector can look for ("left hand", "sign text"), with the rubric dimension it came
from and how bad the problem is. Three sources feed the same type: the critic's answer to a follow-up
question (``parse_region_answer``), the critique's own justifications (``phrases_from_critique``, no
model call), and phrases a user typed (``split_phrases``).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable, Iterable

from ..judging.critique import Critique, ScoreStatus, score_label
from ..judging.rubric import ALL_DIMENSIONS, BY_KEY

SEVERITIES = ("minor", "clear", "severe")          # the 1-4 scale: 3 = minor, 2 = clear problems, 1 = severe
_SEVERITY_RANK = {s: i for i, s in enumerate(SEVERITIES)}
_SEVERITY_WORDS = {
    "minor": "minor", "slight": "minor", "small": "minor", "low": "minor", "mild": "minor",
    "clear": "clear", "moderate": "clear", "medium": "clear", "noticeable": "clear", "obvious": "clear",
    "major": "severe", "severe": "severe", "high": "severe", "critical": "severe", "serious": "severe",
}
MAX_WORDS = 8          # GroundingDINO works best with short expressions
SOURCES = ("critic", "justification", "user")

# Phrases that name the whole picture or nothing at all: a detector cannot localise them.
_NOT_A_REGION = {
    "image", "picture", "photo", "photograph", "scene", "whole image", "entire image", "overall image",
    "everything", "nothing", "none", "n/a", "na", "overall", "composition", "quality", "style", "lighting",
    "prompt", "request", "instruction", "result", "edit", "output", "it", "this", "that", "area", "region",
}


@dataclass(frozen=True)
class DefectPhrase:
    text: str                      # cleaned referring expression, lower case
    dimension: str | None = None   # rubric key (e.g. "physical_quality"); None when not known
    severity: str = "clear"        # one of SEVERITIES
    score: float | None = None     # the dimension's 1-4 score when known
    source: str = "user"           # one of SOURCES
    reason: str = ""               # the sentence or answer line it came from

    def to_dict(self) -> dict:
        return {"phrase": self.text, "dimension": self.dimension,
                "dimension_title": BY_KEY[self.dimension].title if self.dimension in BY_KEY else None,
                "severity": self.severity, "score": self.score, "source": self.source, "reason": self.reason}


@dataclass
class PhraseResult:
    phrases: list[DefectPhrase]
    warnings: list[str] = field(default_factory=list)
    nothing_to_fix: bool = False   # the critic said explicitly that no region needs fixing
    raw: str = ""                  # the critic's follow-up answer, when one was asked


# --- cleaning ----------------------------------------------------------------------------------------

_LEADING = re.compile(r"^(?:(?:the|a|an|some|its|their|his|her|this|that|these|those)\s+)+")
_KEEP_CHARS = re.compile(r"[^a-z0-9'\- ]+")


def clean_phrase(text: str) -> str | None:
    """A detector-ready phrase: lower case, no punctuation or leading article, at most MAX_WORDS words.
    None when nothing usable is left ("!!!", "the image")."""
    s = text.lower().replace("’", "'").replace("`", "'")
    s = _KEEP_CHARS.sub(" ", s)
    words = [w.strip("'-") for w in s.split()]
    s = _LEADING.sub("", " ".join(w for w in words if w))     # articles only once words are clean ("a- 0")
    s = " ".join(s.split()[:MAX_WORDS])
    if not s or not re.search(r"[a-z]", s) or s in _NOT_A_REGION:
        return None
    return s


def dedupe(phrases: Iterable[DefectPhrase]) -> list[DefectPhrase]:
    """First occurrence of each phrase text wins."""
    seen: set[str] = set()
    out = []
    for p in phrases:
        if p.text not in seen:
            seen.add(p.text)
            out.append(p)
    return out


def split_phrases(text: str, source: str = "user") -> list[DefectPhrase]:
    """Phrases typed by a user or passed between nodes: one per line; ';', ',' and a sentence-ending
    '.' also separate (GroundingDINO's own caption form "a . b ." works)."""
    parts = re.split(r"[\n;,]|\.(?=\s|$)", text or "")
    return dedupe(DefectPhrase(t, source=source) for t in (clean_phrase(p) for p in parts) if t)


def phrase_texts(phrases: Iterable[DefectPhrase]) -> list[str]:
    return [p.text for p in phrases]


# --- severity ----------------------------------------------------------------------------------------

def severity_from_score(score: float | None) -> str:
    """4 = no problem, 3 = minor, 2 = clear problems, 1 = severe (the rubric's scale)."""
    if score is None or score != score:
        return "clear"
    if score >= 3.0:
        return "minor"
    return "clear" if score >= 2.0 else "severe"


def parse_severity(text: str) -> str | None:
    s = text.strip().lower()
    m = re.match(r"^[\s*_\[\(]*([1-4](?:\.\d+)?)\b", s)
    if m:
        return severity_from_score(float(m.group(1)))
    for word in re.findall(r"[a-z]+", s):
        if word in _SEVERITY_WORDS:
            return _SEVERITY_WORDS[word]
    return None


def rank_phrases(phrases: Iterable[DefectPhrase], max_regions: int | None = None) -> list[DefectPhrase]:
    """Most severe first (then lower score, then original order); at most ``max_regions``."""
    indexed = list(enumerate(phrases))
    indexed.sort(key=lambda ip: (-_SEVERITY_RANK.get(ip[1].severity, 1),
                                 ip[1].score if ip[1].score is not None else 5.0, ip[0]))
    out = [p for _, p in indexed]
    return out[:max_regions] if max_regions else out


# --- the critic's follow-up answer --------------------------------------------------------------------

_REGION_LINE = re.compile(r"^\s*(?:[-*•>]+\s*|\d{1,2}\s*[.)]\s*)?(?:\*\*|__)?\s*(?:region|area)\s*(?:\d{1,2}\s*)?"
                          r"(?:\*\*|__)?\s*[:：]\s*(?:\*\*|__)?(?P<body>.*)$", re.IGNORECASE)
_BULLET_LINE = re.compile(r"^\s*(?:[-*•]+|\d{1,2}\s*[.)])\s+(?P<body>.+\|.+)$")
_NONE_BODY = re.compile(r"^[\s\"'*_\[\(]*(?:none|no regions?|nothing|n/?a)\b[\s\"'*_\]\).!]*$", re.IGNORECASE)


def dimension_key(text: str) -> str | None:
    """The rubric key a free-text dimension name refers to ("physical quality" -> physical_quality)."""
    s = re.sub(r"[^a-z ]+", " ", text.lower())
    s = re.sub(r"\s+", " ", s).strip()
    if not s:
        return None
    for d in ALL_DIMENSIONS:
        if s == d.title.lower() or s in d.aliases:
            return d.key
    for d in ALL_DIMENSIONS:       # looser: a distinctive word
        for alias in (d.title.lower(),) + d.aliases:
            if alias in s:
                return d.key
    for word, key in (("physical", "physical_quality"), ("visual", "physical_quality"),
                      ("anatomy", "physical_quality"), ("rendering", "text_rendering"),
                      ("spelling", "text_rendering"), ("typography", "text_rendering"),
                      ("source", "image_faithfulness"), ("image faith", "image_faithfulness"),
                      ("text faith", "text_faithfulness"), ("prompt", "text_faithfulness"),
                      ("instruction", "text_faithfulness")):
        if word in s:
            return key
    return None


def parse_region_answer(text: str, critique: Critique | None = None,
                        max_regions: int | None = None) -> PhraseResult:
    """Parse the follow-up answer: lines ``REGION: <phrase> | <dimension> | <severity>``.

    Tolerant of bullets, numbering, bold, missing fields and extra prose; ``REGION: none`` means the
    critic found nothing to fix. Severity falls back to the dimension's score in ``critique``.
    """
    phrases: list[DefectPhrase] = []
    warnings: list[str] = []
    said_none = False
    for line in (text or "").splitlines():
        m = _REGION_LINE.match(line) or _BULLET_LINE.match(line)
        if not m:
            continue
        body = m.group("body").strip()
        if _NONE_BODY.match(body):
            said_none = True
            continue
        fields = [f.strip() for f in re.split(r"\s*\|\s*", body)]
        phrase = clean_phrase(fields[0].strip("\"'“”"))
        if phrase is None:
            warnings.append(f"skipped a region line without a usable phrase: {line.strip()[:120]!r}")
            continue
        key = dimension_key(fields[1]) if len(fields) > 1 else None
        score = critique.score(key) if (critique is not None and key) else None
        score = None if score is not None and score != score else score
        severity = parse_severity(fields[2]) if len(fields) > 2 else None
        phrases.append(DefectPhrase(phrase, key, severity or severity_from_score(score), score, "critic",
                                    line.strip()))
    phrases = dedupe(phrases)
    if phrases and said_none:
        warnings.append("the answer lists regions and also says 'none'; the regions are kept")
    if not phrases and not said_none:
        warnings.append("the critic's answer had no 'REGION: <phrase> | <dimension> | <severity>' line")
    return PhraseResult(rank_phrases(phrases, max_regions), warnings, nothing_to_fix=said_none and not phrases,
                        raw=text or "")


# --- extraction from the justifications (no model call) -----------------------------------------------

_DEFECT_CUES = re.compile(
    r"\b(?:distort\w*|deform\w*|malform\w*|extra|missing|miss(?:es|ed)?|lacks?|lacking|six|seven|fused|"
    r"blurr?\w*|smudg\w*|warp\w*|artifact\w*|artefact\w*|garbl\w*|misspell\w*|illegible|unreadable|wrong\w*|"
    r"incorrect\w*|unnatural\w*|odd\w*|strange\w*|broken|melt\w*|floating|duplicat\w*|asymmetr\w*|"
    r"inconsistent|mismatch\w*|merg\w*|blend\w* into|changed|altered|removed|disappear\w*|halo\w*|noise|noisy|glitch\w*|"
    r"implausible|impossible|misplaced|mangled|twisted|cut off|cropped|too (?:many|few|small|large)|"
    r"written as|spelled|reads as|instead of|not (?:\w+ )?(?:visible|present|shown|rendered|correct))\b",
    re.IGNORECASE)
_DETERMINER = r"(?:the|a|an|its|his|her|their|one|both|each)"
_BOUNDARY = {
    "is", "are", "was", "were", "be", "been", "being", "has", "have", "had", "looks", "look", "appears",
    "appear", "seems", "seem", "shows", "show", "falls", "fall", "changed", "changes", "blends", "blend",
    "lacks", "lack", "misses", "miss", "contains", "contain", "does", "do", "did", "not", "no", "with",
    "which", "that", "who", "and", "or", "but", "in", "into", "at", "to", "from", "by", "for", "as", "than",
    "while", "where", "when", "on", "under", "over", "near", "behind", "around", "against", "there",
    "written", "spelled", "reads", "read", "instead", "become", "becomes", "became", "feels", "lies",
    "sits", "stands", "holds", "hold", "holding", "of", "without", "so", "because", "although", "though",
    "slightly", "very", "too", "rather", "quite", "also", "still",
}
_ABSTRACT_HEADS = _NOT_A_REGION | {
    "way", "ways", "detail", "details", "problem", "problems", "issue", "issues", "error", "errors",
    "artifact", "artifacts", "artefacts", "colour", "color", "colours", "colors", "tone", "mood", "look",
    "feel", "sense", "amount", "number", "rest", "side", "part", "parts", "bit", "lot", "kind", "sort",
    "left", "right", "top", "bottom", "middle", "center", "centre", "corner", "edge", "front", "back",
    "perspective", "proportions", "anatomy", "realism", "score", "rendering", "text faithfulness",
    "faithfulness", "spelling", "instruction", "requirement", "user", "model", "scale", "size", "shape",
}
_TEXT_CARRIERS = ("sign", "signboard", "banner", "poster", "label", "logo", "title", "caption", "book",
                  "cover", "shirt", "t-shirt", "board", "menu", "card", "plate", "page", "screen", "neon")
_PLACEHOLDER = {"image a", "image b", "edit a", "edit b", "a", "b"}


def _clauses(text: str) -> list[str]:
    text = re.sub(r"[\"“”][^\"“”]{0,80}[\"“”]|(?<!\w)'[^']{1,40}'(?!\w)", " QUOTED ", text)   # quoted words: content
    return [c.strip() for c in re.split(r"[.;!?]+\s+|[.;!?]+$|,\s*(?:but|and|while|although)\s+|\s+but\s+", text)
            if c.strip()]


def _noun_phrases(clause: str) -> list[str]:
    """Noun phrases opened by a determiner ("the left hand", "a car's rear wheel"), cut at the first verb,
    preposition or adverb; defect adjectives in front are dropped ("distorted face" -> "face")."""
    words = re.findall(r"[A-Za-z][\w'’-]*", clause)
    out = []
    for i, word in enumerate(words):
        if not re.fullmatch(_DETERMINER, word, re.IGNORECASE):
            continue
        phrase_words = []
        for w in words[i + 1:i + 6]:
            lw = w.lower()
            if lw in _BOUNDARY or (lw.endswith("ly") and len(lw) > 4) or lw == "quoted" \
                    or re.fullmatch(_DETERMINER, lw) or (phrase_words and _DEFECT_CUES.fullmatch(lw)):
                break
            phrase_words.append(lw)
        while len(phrase_words) > 1 and _DEFECT_CUES.fullmatch(phrase_words[0]):
            phrase_words = phrase_words[1:]
        phrase = clean_phrase(" ".join(phrase_words))
        if phrase and phrase.split()[-1] not in _ABSTRACT_HEADS and phrase not in _PLACEHOLDER \
                and not _DEFECT_CUES.fullmatch(phrase.split()[-1]):
            out.append(phrase)
    return out


def _text_region(justification: str, request: str) -> str:
    for source in (justification, request):
        for carrier in _TEXT_CARRIERS:
            if re.search(rf"\b{re.escape(carrier)}s?\b", source or "", re.IGNORECASE):
                return f"{carrier} text"
    return "text"


def phrases_from_critique(critique: Critique, request: str = "", *, score_below: float = 3.5,
                          max_regions: int | None = None, per_dimension: int = 2) -> PhraseResult:
    """Regions named in the justifications of the dimensions that scored below ``score_below``.

    A heuristic for when no follow-up question is asked (or its answer is unreadable): clauses that
    mention a defect ("six fingers", "blurry", "misspelled") give their noun phrases; a low Text
    Rendering score with no named region gives the text ("sign text" when a sign is mentioned).
    """
    phrases: list[DefectPhrase] = []
    warnings: list[str] = []
    for key, dim in critique.dimensions.items():
        if dim.status is not ScoreStatus.OK or dim.score is None or dim.score >= score_below:
            continue
        severity = severity_from_score(dim.score)
        found: list[DefectPhrase] = []
        clauses = _clauses(dim.justification or "")
        flagged = [c for c in clauses if _DEFECT_CUES.search(c)]
        for clause in flagged or clauses:   # no clause names a defect: every clause may hold the region
            for text in _noun_phrases(clause):
                found.append(DefectPhrase(text, key, severity, dim.score, "justification", clause))
        if key == "text_rendering" and not any("text" in p.text or "sign" in p.text for p in found):
            found.insert(0, DefectPhrase(_text_region(dim.justification or "", request), key, severity,
                                         dim.score, "justification", dim.justification or ""))
        found = dedupe(found)[:per_dimension]
        if not found:
            warnings.append(f"{dim.title} scored {dim.score:g} but its justification names no region")
        phrases += found
    ranked = dedupe(rank_phrases(phrases))       # a region named under several dimensions keeps the worst
    return PhraseResult(ranked[:max_regions] if max_regions else ranked, warnings)


def worst_score(critique: Critique) -> float | None:
    scores = [d.score for d in critique.dimensions.values() if d.status is ScoreStatus.OK and d.score is not None]
    return min(scores) if scores else None


def critique_digest(critique: Critique) -> str:
    """The critique as the follow-up prompt quotes it: one block per dimension, then the summary."""
    lines = []
    for d in critique.dimensions.values():
        shown = score_label(d.score, d.status, "g")
        lines.append(f"{d.title} (score {shown}): {(d.justification or '').strip() or '(no justification)'}")
    if critique.summary:
        lines.append(f"Summary: {critique.summary.strip()}")
    return "\n".join(lines)


# --- choosing the phrases (Defect Phrases) --------------------------------------------------------------

PHRASE_SOURCES = ("ask_critic", "justifications", "typed")


@dataclass
class PhrasePick:
    """The phrases one critique gives, and notes on where they came from (fallbacks, nothing to fix)."""
    phrases: list[DefectPhrase]
    notes: list[str] = field(default_factory=list)

    def report(self) -> str:
        """Each phrase with its dimension, severity, score and source, after the notes."""
        lines = [f"NOTE: {n}" for n in self.notes]
        for p in self.phrases:
            where = p.dimension.replace("_", " ") if p.dimension else "unspecified dimension"
            score = f", score {p.score:g}" if p.score is not None else ""
            lines.append(f"{p.text} — {where}, {p.severity}{score} [{p.source}]")
        return "\n".join(lines) if lines else "no defect phrases"


def pick_phrases(critique: Critique, request: str, source: str, typed: str = "", *, max_regions: int = 4,
                 score_below: float = 3.5,
                 ask: Callable[[list[str]], PhraseResult | None] | None = None) -> PhrasePick:
    """The fallback chain: nothing when no score is below ``score_below`` (or none is readable); else the
    critic's follow-up answer (``ask``, for source ``ask_critic``; it may add notes and return None when it
    cannot ask), falling back to the justifications when that answer names no region; typed phrases are
    always added."""
    if source not in PHRASE_SOURCES:
        raise ValueError(f"source must be one of {PHRASE_SOURCES}")
    notes: list[str] = []
    found: list[DefectPhrase] = []
    worst = worst_score(critique)
    if source == "typed":
        pass
    elif worst is None:
        notes.append("the critique has no readable score, so it names no defect; only typed phrases are used")
    elif worst >= score_below:
        notes.append(f"every dimension scored {score_below:g} or more: nothing to fix")
    else:
        result = ask(notes) if source == "ask_critic" and ask is not None else None
        if result is not None and not result.phrases and not result.nothing_to_fix:
            notes.append("the critic's follow-up answer was unreadable; phrases come from the justifications")
        if result is None or (not result.phrases and not result.nothing_to_fix):
            result = phrases_from_critique(critique, request, score_below=score_below, max_regions=max_regions)
        notes += result.warnings
        if result.nothing_to_fix:
            notes.append("the critic answered that no region needs repainting")
        found = result.phrases
    phrases = dedupe(found + split_phrases(typed))
    if not phrases:
        notes.append("no defect phrases: Localise Defects will return an empty mask")
    return PhrasePick(phrases, notes)
