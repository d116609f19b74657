"""The card payloads (models/cards.py), the one function that names a score's state, and the texts
built on it (critique report, compare rationale, rank table, loop history)."""
from __future__ import annotations

import math

import pytest

from rationalrewards import rank
from rationalrewards.judging.cards import (card_labels, compare_card, compare_data, critiques_card, loop_card, rank_card,
                                   word_diff)
from rationalrewards.judging.ranking import rank_rows, rank_table
from rationalrewards.judging.critique import ScoreStatus, overall_label, score_label
from rationalrewards.judging.loop import History, StopRule
from rationalrewards.judging.rubric import Task
from tests.unit.test_critique import crit, pair


def test_score_label_names_each_state_once_for_every_surface():
    assert score_label(3.25, ScoreStatus.OK) == "3.25"
    assert score_label(3.25, ScoreStatus.OK, ".3f") == "3.250"
    assert score_label(None, ScoreStatus.NA) == "N/A"
    assert score_label(None, ScoreStatus.MISSING) == "unreadable"
    assert score_label(math.nan, ScoreStatus.OK) == "unreadable"      # an OK status without a number
    assert score_label(None, None) == "unreadable"                    # no entry for that candidate
    assert overall_label(math.nan) == "unreadable" and overall_label(None) == "unreadable"
    assert overall_label(0.5) == "0.500"


def test_texts_use_the_one_naming_function():
    c = crit(text_faithfulness=3.5, physical_quality=None, text_rendering="na")
    lines = c.report().splitlines()
    assert "Text Faithfulness: 3.50" in lines and "Physical and Visual Quality: unreadable" in lines
    assert "Text Rendering: N/A" in lines and "Overall (0-1): unreadable" in lines
    p = pair(text_faithfulness=(3, 2), physical_quality=(4, "absent"), text_rendering=("na", "na"))
    rationale = p.report("strict").splitlines()
    assert rationale[0] == "Winner: undecided (A unreadable vs B unreadable)"
    assert p.report().splitlines()[0] == "Winner: A (A 9.500 vs B 7.000)"   # published: B's missing score = 2.5
    assert "Text Faithfulness: A 3.000 / B 2.000 -> A" in rationale
    assert "Physical and Visual Quality: A 4.000 / B unreadable -> undecided" in rationale
    assert "Text Rendering: A N/A / B N/A -> tie" in rationale
    decided = pair(text_faithfulness=(3, 2), physical_quality=(4, 4), text_rendering=("na", "na"))
    assert decided.report().splitlines()[0] == "Winner: A (A 9.500 vs B 8.500)"


def test_rank_table_and_rows():
    crits = [crit(text_faithfulness=2, physical_quality=2, text_rendering="na"),
             crit(text_faithfulness=4, physical_quality=None, text_rendering=3),
             crit(text_faithfulness=4, physical_quality=3.5, text_rendering="na")]
    ranked = rank(crits)
    rows = rank_rows(ranked)
    assert [(r["rank"], r["index"]) for r in rows] == [(1, 2), (2, 0), (3, 1)]
    assert rows[0]["overall"] == pytest.approx(((4 + 3.5) / 2 - 1) / 3) and rows[2]["overall"] is None
    assert rows[2]["scores"] == {"text_faithfulness": 4.0, "physical_quality": None, "text_rendering": 3.0}
    assert rank_table(ranked).splitlines() == [
        "rank | index | overall | Text Faithfulness | Physical and Visual Quality | Text Rendering",
        f"1 | 2 | {rows[0]['overall']:.3f} | 4.000 | 3.500 | N/A",
        "2 | 0 | 0.333 | 2.000 | 2.000 | N/A",
        "3 | 1 | unreadable | 4.000 | unreadable | 3.000"]
    [card] = rank_card(ranked, rows, "a fox")["rr_rank"]
    assert card["rows"] is rows and [c["dimensions"][0]["score"] for c in card["critiques"]] == [4.0, 2.0, 4.0]
    assert card["labels"] == card_labels() and [c["raw"] is None for c in card["critiques"]] == [True, True, False]
    assert card["critiques"][2]["raw"] == crits[1].raw and card["critiques"][2]["advice"]   # the unreadable one


def test_critique_and_compare_payloads():
    c = crit(Task.EDIT, text_faithfulness=3, image_faithfulness=None, physical_quality=2, text_rendering="na")
    c.raw = "the model's whole answer"
    [entry] = critiques_card([c], ["make it night"], "rl_edit")["rr_critiques"]
    assert entry == c.to_dict("rl_edit") | {"raw": "the model's whole answer", "prompt": "make it night",
                                            "labels": card_labels(), "advice": entry["advice"]}
    assert entry["advice"].startswith("The critic did not answer in the critique layout")
    readable = crit(text_faithfulness=3, physical_quality=2, text_rendering="na")
    readable.raw = "the model's whole answer"
    [entry] = critiques_card([readable], ["a fox"])["rr_critiques"]
    assert entry == readable.to_dict() | {"raw": None, "prompt": "a fox", "labels": card_labels()}
    assert card_labels() == {"n/a": "N/A", "missing": "unreadable", "overall": "unreadable"}
    p = pair(text_faithfulness=(3, 2), physical_quality=(4, 4), text_rendering=("na", "na"))
    data = compare_data(p, "a fox")
    assert data["winner"] == "A" and data["prompt"] == "a fox" and data["raw"] is None and "labels" not in data
    assert compare_card(p, "a fox") == {"rr_compare": [data | {"raw": None, "labels": card_labels()}]}
    unreadable = pair(text_faithfulness=(3, 2), physical_quality=(4, "absent"), text_rendering=("na", "na"))
    unreadable.raw = "## Text Faithfulness\nImage A Score: 3\n(the answer stops here"
    [entry] = compare_card(unreadable, "a fox")["rr_compare"]
    assert entry["raw"] == unreadable.raw and "max answer length (tokens)" in entry["advice"]


@pytest.mark.parametrize("raw, warnings, says", [
    ("", [], "The critic wrote nothing"),
    ("<think>long reasoning", ["the answer stops inside its <think> reasoning block"], "cut off while"),
    ("I like this picture a lot.", [], "did not answer in the critique layout"),
    ("## Text Faithfulness\n### Score: 3\n## Physical", [], "Part of the answer could not be read"),
])
def test_the_advice_is_one_line_for_what_went_wrong(raw, warnings, says):
    from rationalrewards.judging.cards import unreadable_advice
    advice = unreadable_advice(raw, warnings)
    assert says in advice and "\n" not in advice


@pytest.mark.parametrize("before, after", [
    ("a red cat in a garden", "a red cat with five toes in a sunny garden"),
    ("  leading and trailing  ", "leading, trailing\nand more"), ("", "new"), ("same words", "same words"),
    ("drop everything", "")])
def test_word_diff_rebuilds_both_prompts(before, after):
    parts = word_diff(before, after)
    assert "".join(p["text"] for p in parts if p["op"] != "add") == before
    assert "".join(p["text"] for p in parts if p["op"] != "del") == after
    assert all(p["text"] for p in parts) and all(a["op"] != b["op"] for a, b in zip(parts, parts[1:]))


def test_word_diff_marks_whole_words():
    parts = word_diff("a red cat in a garden", "a red cat with five toes in a sunny garden")
    assert [p["text"].strip() for p in parts if p["op"] == "add"] == ["with five toes", "sunny"]
    assert not [p for p in parts if p["op"] == "del"]


def test_loop_payload():
    rule = StopRule(max_rounds=3)
    history = History()
    first = crit(text_faithfulness=2, physical_quality=2, text_rendering="na")
    second = crit(text_faithfulness=None, physical_quality=3, text_rendering="na")
    history.add(first, "a red cat", 1, rule)
    history.add(second, "a red cat, sharp", 1, rule)
    [entry] = loop_card(history, [first, second])["rr_loop"]
    assert entry["rounds"] == history.to_dict()["rounds"] and entry["best"] == 0
    assert entry["titles"] == {"text_faithfulness": "Text Faithfulness",
                               "physical_quality": "Physical and Visual Quality", "text_rendering": "Text Rendering"}
    assert entry["statuses"][1] == {"text_faithfulness": "missing", "physical_quality": "ok", "text_rendering": "n/a"}
    assert entry["diffs"] == [None, word_diff("a red cat", "a red cat, sharp")]
    assert entry["labels"] == card_labels()


def test_rank_card_outlines_a_best_only_when_the_first_scored_strictly_higher():
    tied = [crit(text_faithfulness=3, physical_quality=3, text_rendering="na") for _ in range(3)]
    ranked = rank(tied)
    assert rank_card(ranked, rank_rows(ranked), "a fox")["rr_rank"][0]["clear_best"] is False
    better = rank([crit(text_faithfulness=3, physical_quality=3, text_rendering="na"),
                   crit(text_faithfulness=4, physical_quality=3, text_rendering="na")])
    assert rank_card(better, rank_rows(better), "a fox")["rr_rank"][0]["clear_best"] is True
    unreadable = rank([crit(text_faithfulness=None, physical_quality=3, text_rendering="na")] * 2)
    assert rank_card(unreadable, rank_rows(unreadable), "a fox")["rr_rank"][0]["clear_best"] is False
