"""Refinement merging: which parts of the user's prompt survive (protected syntaxes)."""
from __future__ import annotations

import pytest

from rationalrewards.judging.parser import parse_critique
from rationalrewards.judging.refine import merge, protected_parts, refine


def critique_with(refined: str | None):
    text = "1. Text Faithfulness:\n## Justification: x\n## Score: 2\n# Summary: s"
    if refined is not None:
        text += f"\n# User Request Refinement:\n## Refined Request: {refined}"
    return parse_critique(text)


@pytest.mark.parametrize("original, refined, must_contain", [
    ("a fox <lora:foxStyle_v2:0.8>", "a red fox in the snow", ["<lora:foxStyle_v2:0.8>"]),
    ("a fox <lyco:painterly:1.0> <hypernet:ink:0.5>", "a fox at dawn", ["<lyco:painterly:1.0>", "<hypernet:ink:0.5>"]),
    ("embedding:EasyNegative, a fox", "a fox at dawn", ["embedding:EasyNegative"]),
    ("(embedding:myStyle:1.2), a fox", "a fox at dawn", ["(embedding:myStyle:1.2)"]),
    ("<embedding:myStyle>, a fox", "a fox at dawn", ["<embedding:myStyle>"]),
    ("a (red fox:1.3) in snow", "a red fox sitting in deep snow", ["(red fox:1.3)"]),
])
def test_merge_keeps_protected_syntaxes(original, refined, must_contain):
    merged, restored = merge(original, refined)
    for part in must_contain:
        assert merged.count(part) == 1, merged
    assert set(restored) == set(must_contain)


def test_weighted_phrase_is_restored_in_place_when_the_refined_prompt_repeats_it():
    merged, _ = merge("a (red fox:1.3) in snow", "A red fox sitting in deep snow, golden light")
    assert merged == "A (red fox:1.3) sitting in deep snow, golden light"


def test_weighted_phrase_absent_from_refined_prompt_is_appended():
    merged, _ = merge("a cat, (watercolor:1.4)", "a ginger cat on a windowsill")
    assert merged == "a ginger cat on a windowsill, (watercolor:1.4)"


def test_keep_list_survives_verbatim_and_is_not_duplicated():
    merged, restored = merge("sks person, portrait", "a portrait of sks person in soft light", keep="sks person, film grain")
    assert merged == "a portrait of sks person in soft light, film grain"
    assert restored == ["film grain"]


def test_protected_parts_are_deduplicated_in_order():
    assert protected_parts("(a:1.2) <lora:x:1> (a:1.2)", keep="(a:1.2), z") == ["(a:1.2)", "<lora:x:1>", "z"]


def test_refine_modes():
    crit = critique_with("a red fox, detailed")
    assert refine(crit, "a fox <lora:f:1>", "refined").prompt == "a red fox, detailed"
    merged = refine(crit, "a fox <lora:f:1>", "merge")
    assert merged.prompt == "a red fox, detailed, <lora:f:1>" and merged.used_refined and "<lora:f:1>" in merged.note
    with pytest.raises(ValueError):
        refine(crit, "x", "rewrite")


def test_missing_refined_request_returns_the_original_and_says_why():
    result = refine(critique_with(None), "a fox <lora:f:1>")
    assert result.prompt == "a fox <lora:f:1>" and not result.used_refined
    assert "no Refined Request" in result.note
    assert refine(None, "a fox").note.endswith("no critique")
