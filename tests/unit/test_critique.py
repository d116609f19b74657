"""Aggregation: overall reward, weights, pairwise totals and winners, JSON output, ranking."""
from __future__ import annotations

import json
import math

import pytest

from rationalrewards import rank
from rationalrewards.judging.critique import (Critique, DimensionResult, PairwiseCritique, PairwiseDimension,
                                      ScoreStatus, Winner)
from rationalrewards.judging.parser import parse_critique, parse_pairwise
from rationalrewards.judging.rubric import (PAIRWISE_NA_VALUE, WEIGHT_PRESETS, Task, dimensions_for,
                                    resolve_weights)
from tests.unit.rr_sample_answers import EDIT_FULL, EDIT_PAIR, T2I_FULL, T2I_PAIR


def dim(key: str, value) -> DimensionResult:
    """value: a float (OK), "na" or None (missing)."""
    title = {d.key: d.title for t in Task for d in dimensions_for(t)}[key]
    if value == "na":
        return DimensionResult(key, title, status=ScoreStatus.NA, raw_score="N/A")
    if value is None:
        return DimensionResult(key, title)
    return DimensionResult(key, title, score=float(value), status=ScoreStatus.OK, raw_score=str(value))


def crit(task: Task | str = Task.T2I, **values) -> Critique:
    task = Task(task)
    return Critique(task=task, dimensions={d.key: dim(d.key, values[d.key]) for d in dimensions_for(task)})


def pair(task: Task | str = Task.T2I, winners: dict | None = None, **values) -> PairwiseCritique:
    """values: key=(a, b) with the same conventions as ``dim``."""
    task = Task(task)
    winners = winners or {}
    dims = {}
    for d in dimensions_for(task):
        a, b = values[d.key]
        dims[d.key] = PairwiseDimension(d.key, d.title, a=dim(d.key, a) if a != "absent" else None,
                                        b=dim(d.key, b) if b != "absent" else None,
                                        stated_winner=winners.get(d.key))
    return PairwiseCritique(task=task, dimensions=dims)


# --- pointwise overall -------------------------------------------------------------------------------

def test_overall_is_normalised_mean():
    c = crit(text_faithfulness=3.5, physical_quality=2.5, text_rendering=2)
    assert c.overall() == pytest.approx(((3.5 + 2.5 + 2) / 3 - 1) / 3)
    assert c.overall("equal") == c.overall()
    assert c.overall(None) == c.overall()


@pytest.mark.parametrize("value, expected", [(1, 0.0), (4, 1.0), (2.5, 0.5)])
def test_overall_bounds(value, expected):
    c = crit(text_faithfulness=value, physical_quality=value, text_rendering=value)
    assert c.overall() == pytest.approx(expected)


def test_overall_skips_na():
    c = crit(text_faithfulness=4, physical_quality=2, text_rendering="na")
    assert c.overall() == pytest.approx(((4 + 2) / 2 - 1) / 3)


def test_all_na_is_nan():
    c = crit(text_faithfulness=3, physical_quality=3, text_rendering="na")
    assert math.isnan(c.overall({"text_faithfulness": 0, "physical_quality": 0}))


def test_missing_weighted_score_is_nan_never_averaged_around():
    c = crit(text_faithfulness=4, physical_quality=None, text_rendering=4)
    assert math.isnan(c.overall())
    assert not c.complete
    # ...unless the missing dimension carries no weight
    assert c.overall({"physical_quality": 0}) == pytest.approx(1.0)


def test_rl_edit_preset_excludes_image_faithfulness():
    c = crit("edit", text_faithfulness=4, image_faithfulness=1, physical_quality=3, text_rendering="na")
    assert c.overall("equal") == pytest.approx(((4 + 1 + 3) / 3 - 1) / 3)
    assert c.overall("rl_edit") == pytest.approx(((4 + 3) / 2 - 1) / 3)
    # a missing Image Faithfulness does not poison the rl_edit reward
    c2 = crit("edit", text_faithfulness=4, image_faithfulness=None, physical_quality=3, text_rendering=2)
    assert math.isnan(c2.overall("equal"))
    assert c2.overall("rl_edit") == pytest.approx(((4 + 3 + 2) / 3 - 1) / 3)


def test_presets_documented():
    assert set(WEIGHT_PRESETS) >= {"equal", "rl_edit"}
    assert WEIGHT_PRESETS["rl_edit"]["image_faithfulness"] == 0.0
    assert all(w == 1.0 for w in WEIGHT_PRESETS["equal"].values())


def test_custom_weights():
    c = crit(text_faithfulness=4, physical_quality=1, text_rendering=2)
    # partial dict: unnamed dimensions keep weight 1
    expected = ((3 * 4 + 1 + 2) / 5 - 1) / 3
    assert c.overall({"text_faithfulness": 3}) == pytest.approx(expected)
    assert c.overall({"text_faithfulness": 1, "physical_quality": 0, "text_rendering": 0}) == pytest.approx(1.0)
    # a weight on a dimension the task does not have is harmless
    assert c.overall({"image_faithfulness": 5}) == pytest.approx(c.overall())


@pytest.mark.parametrize("bad", ["nope", "EQUAL", {"text_faith": 1}, {"text_faithfulness": -0.5}])
def test_invalid_weights_raise(bad):
    c = crit(text_faithfulness=4, physical_quality=1, text_rendering=2)
    with pytest.raises(ValueError):
        c.overall(bad)
    with pytest.raises(ValueError):
        resolve_weights(bad)


def test_invalid_weight_messages_are_helpful():
    with pytest.raises(ValueError, match="rl_edit"):
        resolve_weights("nope")
    with pytest.raises(ValueError, match="text_faith"):
        resolve_weights({"text_faith": 1})


def test_score_accessor():
    c = crit(text_faithfulness=3, physical_quality="na", text_rendering=None)
    assert c.score("text_faithfulness") == 3.0
    assert math.isnan(c.score("physical_quality"))
    assert math.isnan(c.score("text_rendering"))
    assert math.isnan(c.score("image_faithfulness"))   # not a T2I dimension


def test_dimension_value_is_nan_unless_ok():
    d = DimensionResult("text_faithfulness", "Text Faithfulness", score=3.0, status=ScoreStatus.MISSING)
    assert math.isnan(d.value)
    assert d.to_dict()["score"] is None


# --- JSON --------------------------------------------------------------------------------------------

def test_to_dict_json_with_nan_becomes_none():
    c = crit(text_faithfulness=None, physical_quality="na", text_rendering=3)
    d = c.to_dict()
    text = json.dumps(d, allow_nan=False)
    back = json.loads(text)
    assert back["overall"] is None
    assert [x["score"] for x in back["dimensions"]] == [None, None, 3.0]
    assert [x["status"] for x in back["dimensions"]] == ["missing", "n/a", "ok"]
    assert back["task"] == "t2i"


def test_to_dict_full_answer():
    c = parse_critique(EDIT_FULL, "edit")
    back = json.loads(json.dumps(c.to_dict("rl_edit"), allow_nan=False))
    assert back["overall"] == pytest.approx(((4 + 3.5) / 2 - 1) / 3)
    assert back["refined_request"] == c.refined_request
    assert back["raw"] == EDIT_FULL
    assert back["warnings"] == []
    assert [x["key"] for x in back["dimensions"]] == ["text_faithfulness", "image_faithfulness",
                                                       "physical_quality", "text_rendering"]


def test_pairwise_to_dict_json():
    p = parse_pairwise(T2I_PAIR)
    back = json.loads(json.dumps(p.to_dict(), allow_nan=False))
    assert back["winner"] == "A" and back["total_a"] == 8.5 and back["total_b"] == 6.5
    assert [x["winner"] for x in back["dimensions"]] == ["A", "B", "A"]
    assert back["decision"]["rule"] == "published" and back["decision"]["filled"] == []
    broken = pair(text_faithfulness=(3, None), physical_quality=(3, "absent"), text_rendering=("na", "na"))
    back = json.loads(json.dumps(broken.to_dict("strict"), allow_nan=False))
    assert back["winner"] == "undecided" and back["total_a"] is None and back["total_b"] is None
    assert back["decision"]["rule"] == "strict"
    assert back["dimensions"][1]["b"] is None
    back = json.loads(json.dumps(broken.to_dict(), allow_nan=False))
    assert back["winner"] == "A" and back["total_a"] == 3 + 3 + 2.5 and back["total_b"] == 2.5 * 3
    assert back["decision"]["filled"] == ["Text Faithfulness (B): unreadable, counted as 2.5",
                                          "Physical and Visual Quality (B): unreadable, counted as 2.5",
                                          "Text Rendering (A): N/A counted as 2.5",
                                          "Text Rendering (B): N/A counted as 2.5"]


def test_report_mentions_warnings_and_missing():
    c = parse_critique(T2I_FULL.replace("## Score: 2.5\n", ""))
    text = c.report()
    assert text.startswith("WARNING:")
    assert "Physical and Visual Quality: unreadable" in text
    assert "Overall (0-1): unreadable" in text
    ok = parse_critique(T2I_FULL).report()
    assert "WARNING" not in ok and "Text Faithfulness: 3.50" in ok


# --- pairwise ----------------------------------------------------------------------------------------

def test_pairwise_totals_count_na_as_2_5():
    p = pair(text_faithfulness=(4, 3), physical_quality=(3, 3), text_rendering=("na", 2))
    assert PAIRWISE_NA_VALUE == 2.5
    assert p.totals() == (4 + 3 + 2.5, 3 + 3 + 2)
    assert p.winner is Winner.A


@pytest.mark.parametrize("a, b, winner", [((4, 3, 3), (3, 3, 3), Winner.A), ((2, 3, "na"), (3, 3, "na"), Winner.B),
                                          ((3, 3, "na"), (3, 3, 2.5), Winner.TIE)])
def test_pairwise_winner(a, b, winner):
    p = pair(text_faithfulness=(a[0], b[0]), physical_quality=(a[1], b[1]), text_rendering=(a[2], b[2]))
    assert p.winner is winner


@pytest.mark.parametrize("values", [dict(text_faithfulness=(4, None), physical_quality=(3, 3), text_rendering=(3, 3)),
                                    dict(text_faithfulness=(4, 1), physical_quality=("absent", 3),
                                         text_rendering=(3, 3))])
def test_pairwise_missing_is_undecided_under_strict_and_2_5_under_published(values):
    p = pair(**values)
    ta, tb = p.totals("strict")
    assert math.isnan(ta) and math.isnan(tb)
    assert p.decide("strict").winner is Winner.UNDECIDED
    ta, tb = p.totals()
    assert not math.isnan(ta) and not math.isnan(tb)
    assert p.winner is not Winner.UNDECIDED


def test_pairwise_overall_winner_uses_totals_not_stated_winners():
    p = pair(winners={"text_faithfulness": Winner.B, "physical_quality": Winner.B, "text_rendering": Winner.B},
             text_faithfulness=(4, 1), physical_quality=(3, 3), text_rendering=(3, 3))
    assert p.winner is Winner.A


def test_dimension_winner_stated_else_scores():
    p = pair(winners={"text_faithfulness": Winner.TIE},
             text_faithfulness=(4, 1), physical_quality=(2, 3.5), text_rendering=("na", 3))
    assert p.dimensions["text_faithfulness"].winner is Winner.TIE         # the model's word wins
    assert p.dimensions["physical_quality"].winner is Winner.B            # scores
    assert p.dimensions["text_rendering"].winner is Winner.B              # N/A = 2.5 < 3
    p2 = pair(text_faithfulness=(3, 3), physical_quality=(None, 3), text_rendering=("na", "na"))
    assert p2.dimensions["text_faithfulness"].winner is Winner.TIE
    assert p2.dimensions["physical_quality"].winner is Winner.UNDECIDED
    assert p2.dimensions["text_rendering"].winner is Winner.TIE


def test_pairwise_edit_parsed_totals():
    p = parse_pairwise(EDIT_PAIR, "edit")
    assert p.totals() == (12.0, 14.0)
    assert p.winner is Winner.B


# --- rank --------------------------------------------------------------------------------------------

def test_rank_nan_last_and_ties_by_index():
    cs = [crit(text_faithfulness=None, physical_quality=3, text_rendering=3),     # 0: NaN
          crit(text_faithfulness=3, physical_quality=3, text_rendering=3),        # 1: 0.667
          crit(text_faithfulness=4, physical_quality=4, text_rendering="na"),     # 2: 1.0
          crit(text_faithfulness=3, physical_quality=3, text_rendering="na"),     # 3: 0.667 (tie with 1)
          crit(text_faithfulness="na", physical_quality=None, text_rendering=1),  # 4: NaN
          crit(text_faithfulness=1, physical_quality=1, text_rendering=1)]        # 5: 0.0
    ranked = rank(cs)
    assert [r.index for r in ranked] == [2, 1, 3, 5, 0, 4]
    assert ranked[0].overall == pytest.approx(1.0)
    assert math.isnan(ranked[-1].overall) and math.isnan(ranked[-2].overall)
    assert ranked[0].critique is cs[2]


def test_rank_with_weights_and_empty():
    cs = [crit("edit", text_faithfulness=3, image_faithfulness=1, physical_quality=3, text_rendering="na"),
          crit("edit", text_faithfulness=2.5, image_faithfulness=4, physical_quality=3, text_rendering="na")]
    assert [r.index for r in rank(cs, "equal")] == [1, 0]
    assert [r.index for r in rank(cs, "rl_edit")] == [0, 1]
    assert rank([]) == []
    with pytest.raises(ValueError):
        rank(cs, "bogus")
