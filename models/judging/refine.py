"""Turn a critique into the next prompt without losing what the user fixed on purpose.

Protected syntaxes (kept by ``merge``):
- LoRA / LyCORIS / hypernetwork tags: ``<lora:name:0.8>``, ``<lyco:...>``, ``<hypernet:...>``
- embeddings: ``embedding:name`` (ComfyUI), ``<embedding:name>``, optionally weighted ``(embedding:name:1.2)``
- attention weights: ``(phrase:1.2)``; a weighted phrase whose text the refined prompt repeats
  plainly gets its weight back in place, otherwise it is appended
- ``BREAK`` separators are not moved (they are position-dependent); everything else is free text
- user keep-list: comma-separated phrases (trigger words, style tags) that must appear verbatim
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from .critique import Critique

_TAG_RE = re.compile(r"<(?:lora|lyco|locon|loha|hypernet|embedding):[^<>]+>", re.IGNORECASE)
_EMBED_RE = re.compile(r"\(?\bembedding:[\w.\-/\\]+(?::[\d.]+)?\)?", re.IGNORECASE)
_WEIGHT_RE = re.compile(r"\(([^():]+):\s*(\d+(?:\.\d+)?)\)")

MODES = ("refined", "merge")


@dataclass(frozen=True)
class Refinement:
    prompt: str
    used_refined: bool
    note: str            # why this prompt: shown to the user
    restored: tuple[str, ...] = ()   # protected parts the merge put back


def protected_parts(prompt: str, keep: str = "") -> list[str]:
    """Fragments of ``prompt`` that a merge must keep, in order of appearance, without duplicates."""
    found: list[tuple[int, str]] = []
    for rx in (_TAG_RE, _EMBED_RE, _WEIGHT_RE):
        found += [(m.start(), m.group(0).strip()) for m in rx.finditer(prompt)]
    parts = [p for _, p in sorted(found)]
    parts += [k.strip() for k in keep.split(",") if k.strip()]
    seen, out = set(), []
    for p in parts:
        if p.lower() not in seen:
            seen.add(p.lower())
            out.append(p)
    return out


def merge(original: str, refined: str, keep: str = "") -> tuple[str, list[str]]:
    """``refined`` with every protected part of ``original`` (and of ``keep``) present."""
    result = refined.strip()
    restored: list[str] = []
    for part in protected_parts(original, keep):
        if part.lower() in result.lower():
            continue
        weighted = _WEIGHT_RE.fullmatch(part)
        if weighted and not part.lower().startswith("(embedding:"):
            text = weighted.group(1).strip()
            plain = re.compile(r"(?<![\w(])" + re.escape(text) + r"(?![\w:])", re.IGNORECASE)
            if plain.search(result):
                result = plain.sub(part.replace("\\", "\\\\"), result, count=1)
                restored.append(part)
                continue
        result = f"{result.rstrip(' ,')}, {part}" if result else part
        restored.append(part)
    return result, restored


def refine(critique: Critique | None, original: str, mode: str = "merge", keep: str = "") -> Refinement:
    """The next prompt: the critic's refined request (as is, or merged with the original)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}; got {mode!r}")
    if critique is None or not (critique.refined_request or "").strip():
        why = "no critique" if critique is None else "the critique has no Refined Request"
        return Refinement(original, False, f"kept the original prompt: {why}")
    refined = critique.refined_request.strip()
    if mode == "refined":
        return Refinement(refined, True, "the critic's refined request, as written")
    merged, restored = merge(original, refined, keep)
    note = ("the critic's refined request" +
            (f", with {len(restored)} protected part(s) of the original restored: {', '.join(restored)}"
             if restored else "; every protected part of the original was already in it"))
    return Refinement(merged, True, note, tuple(restored))
