"""The scoring rules in their one place (rationalrewards.judging.rules): the pairwise decision (published / strict),
the aspects a total sums, and the pointwise reward for an unreadable answer (nan / zero). Every expected
number below is worked out by hand from the authors' rule (sum, missing or N/A = 2.5, equal = tie)."""
from __future__ import annotations

import math

import pytest

from rationalrewards.judging.critique import Winner
from rationalrewards.judging.parser import parse_critique, parse_pairwise
from rationalrewards.judging.rules import (DecisionRule, UnreadableReward, decide, decision_rule, pointwise_reward,
                                   unreadable, unreadable_rule)
from tests.unit.rr_sample_answers import EDIT_PAIR, T2I_FULL, T2I_PAIR, t2i_answer
from tests.unit.test_critique import crit, pair


@pytest.mark.parametrize("values, published, strict", [
    # A = 3.5 + 3 + 2.5(N/A) = 9.0; B = 2 + 2.5(missing) + 1 = 5.5
    (dict(text_faithfulness=(3.5, 2), physical_quality=(3, None), text_rendering=("na", 1)),
     (9.0, 5.5, Winner.A), Winner.UNDECIDED),
    # A = 3 + 3 + 2.5 = 8.5 = B: a tie, under both rules (N/A is not unreadable)
    (dict(text_faithfulness=(3, 3), physical_quality=(3, 3), text_rendering=("na", "na")),
     (8.5, 8.5, Winner.TIE), Winner.TIE),
    # A = 2.5(absent) + 2.5(missing) + 4 = 9.0; B = 4 + 1 + 4 = 9.0 -> tie under published
    (dict(text_faithfulness=("absent", 4), physical_quality=(None, 1), text_rendering=(4, 4)),
     (9.0, 9.0, Winner.TIE), Winner.UNDECIDED),
    # A = 1 + 1.5 + 2.5 = 5.0; B = 1.25 + 1.5 + 2.5 = 5.25 -> B by a quarter point
    (dict(text_faithfulness=(1, 1.25), physical_quality=(1.5, 1.5), text_rendering=("na", "na")),
     (5.0, 5.25, Winner.B), Winner.B),
])
def test_sum_rule_hand_computed(values, published, strict):
    p = pair(**values)
    d = decide(p, "published")
    assert (d.total_a, d.total_b, d.winner) == published
    assert d.rule is DecisionRule.PUBLISHED
    s = decide(p, "strict")
    assert s.winner is strict
    if strict is Winner.UNDECIDED:
        assert math.isnan(s.total_a) and math.isnan(s.total_b)
    else:
        assert (s.total_a, s.total_b) == published[:2]


def test_default_rule_is_published_and_the_winner_ignores_stated_winners():
    p = pair(winners={"text_faithfulness": Winner.A, "physical_quality": Winner.A, "text_rendering": Winner.A},
             text_faithfulness=(2, 3), physical_quality=(None, 3), text_rendering=(3, 3))
    # A = 2 + 2.5 + 3 = 7.5 < B = 9: the totals decide, not the model's per-dimension Winner lines
    assert p.winner is Winner.B and decide(p).rule is DecisionRule.PUBLISHED
    assert p.totals() == (7.5, 9.0)


def test_filled_scores_are_listed():
    p = pair(text_faithfulness=(3, None), physical_quality=(3, 3), text_rendering=("na", 2))
    assert decide(p).filled == ("Text Faithfulness (B): unreadable, counted as 2.5",
                                "Text Rendering (A): N/A counted as 2.5")
    assert decide(p, "strict").filled == ("Text Faithfulness (B): unreadable",
                                          "Text Rendering (A): N/A counted as 2.5")
    assert decide(p, "strict").to_dict() == {"winner": "undecided", "rule": "strict", "aspects": "all",
                                             "total_a": None, "total_b": None,
                                             "filled": list(decide(p, "strict").filled)}


def test_aspects_text_and_visual():
    t2i = parse_pairwise(T2I_PAIR)                       # TF 3.5/2, PQ 3/3.5, TR 2/1
    assert (decide(t2i, aspects="text").total_a, decide(t2i, aspects="text").total_b) == (3.5, 2.0)
    assert decide(t2i, aspects="visual").winner is Winner.B
    edit = parse_pairwise(EDIT_PAIR, "edit")             # TF 4/4, IF 2/4, PQ 3.5/3.5, TR N/A
    v = decide(edit, aspects="visual")
    assert (v.total_a, v.total_b, v.winner) == (2 + 3.5, 4 + 3.5, Winner.B)
    assert decide(edit, aspects="text").winner is Winner.TIE
    with pytest.raises(ValueError, match="aspects"):
        decide(edit, aspects="colour")


def test_rule_names_are_checked():
    assert decision_rule(None) is DecisionRule.PUBLISHED and decision_rule("strict") is DecisionRule.STRICT
    assert unreadable_rule(None) is UnreadableReward.NAN and unreadable_rule("zero") is UnreadableReward.ZERO
    with pytest.raises(ValueError, match="published"):
        decision_rule("lenient")
    with pytest.raises(ValueError, match="nan"):
        unreadable_rule("skip")


# --- pointwise reward ------------------------------------------------------------------------------------

def test_pointwise_reward_hand_computed():
    c = parse_critique(T2I_FULL)                         # 3.5, 2.5, 2 -> mean 8/3
    expected = (8 / 3 - 1) / 3
    for rule in ("nan", "zero"):
        assert pointwise_reward(c, "equal", rule) == pytest.approx(expected)
    na = crit(text_faithfulness=4, physical_quality=3, text_rendering="na")   # mean 3.5 -> 2.5/3
    assert pointwise_reward(na) == pytest.approx(2.5 / 3)
    edit = crit("edit", text_faithfulness=3, image_faithfulness=1, physical_quality=4, text_rendering="na")
    assert pointwise_reward(edit, "equal") == pytest.approx((8 / 3 - 1) / 3)
    assert pointwise_reward(edit, "rl_edit") == pytest.approx((3.5 - 1) / 3)   # Image Faithfulness left out


def test_unreadable_answer_nan_or_zero():
    c = parse_critique(t2i_answer(pq="illegible"))
    assert unreadable(c)
    assert math.isnan(pointwise_reward(c, on_unreadable="nan"))
    assert pointwise_reward(c, on_unreadable="zero") == 0.0
    assert math.isnan(c.overall()) and c.overall(on_unreadable="zero") == 0.0
    garbage = parse_critique("I like it.")
    assert pointwise_reward(garbage, on_unreadable="zero") == 0.0
    # a missing score in a dimension the weights leave out does not make the answer unreadable
    edit = crit("edit", text_faithfulness=3, image_faithfulness=None, physical_quality=3, text_rendering="na")
    assert not unreadable(edit, "rl_edit") and pointwise_reward(edit, "rl_edit") == pytest.approx(2 / 3)
    assert unreadable(edit, "equal")


def test_everything_na_under_the_weights():
    c = crit(text_faithfulness=3, physical_quality=3, text_rendering="na")
    only_text = {"text_faithfulness": 0.0, "physical_quality": 0.0, "text_rendering": 1.0}
    assert math.isnan(pointwise_reward(c, only_text, "nan"))
    assert pointwise_reward(c, only_text, "zero") == 0.0


def test_records_say_which_rule_applied():
    c = parse_critique(t2i_answer(pq="illegible"))
    assert c.to_dict()["reward_rule"] == {"weights": "equal", "unreadable": "nan"}
    zero = c.to_dict("equal", "zero")
    assert zero["overall"] == 0.0 and zero["reward_rule"]["unreadable"] == "zero"
    p = parse_pairwise(T2I_PAIR.replace("## Score B: 2\n", ""))
    assert p.to_dict()["decision"]["rule"] == "published" and p.to_dict()["winner"] == "A"
    assert p.to_dict("strict")["winner"] == "undecided"
