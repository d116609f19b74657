"""Stop rule, keep-the-best and history of the Generate-Critique-Refine loop."""
from __future__ import annotations

import math

import pytest

from rationalrewards.loop import History, StopRule, best_round, next_seed
from rationalrewards.parser import parse_critique


def crit(tf, pq, tr="N/A", refined="better"):
    return parse_critique(
        f"1. Text Faithfulness:\n## Justification: a\n## Score: {tf}\n2. Physical and Visual Quality:\n"
        f"## Justification: b\n## Score: {pq}\n3. Text Rendering:\n## Justification: c\n## Score: {tr}\n"
        f"# Summary: s\n## Refined Request: {refined}")


UNREADABLE = parse_critique("lorem ipsum, no scores at all")


def test_published_rule_needs_both_dimensions_at_three():
    rule = StopRule()
    assert rule.is_good(crit(3, 3))
    assert rule.is_good(crit(3.0, 4, tr=1))         # text rendering is not in the published rule
    assert not rule.is_good(crit(2.9, 4))
    assert not rule.is_good(crit(4, 2.5))


def test_unparsed_scores_never_count_as_good():
    assert not StopRule().is_good(UNREADABLE)
    assert not StopRule().is_good(crit("garbled", 4))
    assert not StopRule(dimensions=("image_faithfulness",)).is_good(crit(4, 4))   # nothing to check → not good


def test_configurable_dimensions_and_threshold():
    rule = StopRule(dimensions=("text_faithfulness", "text_rendering"), threshold=3.5)
    assert rule.is_good(crit(3.5, 1, tr="N/A"))      # N/A passes
    assert not rule.is_good(crit(3.5, 4, tr=3))


def test_round_zero_good_stops_after_one_critique():
    h, rule = History(), StopRule(max_rounds=3)
    h.add(crit(3.5, 3.5), "p0", 7, rule)
    assert "meets the stop rule" in h.decide_stop(rule, "p1", 7)
    assert h.best == 0


def test_stops_at_max_rounds_and_keeps_the_best_not_the_last():
    rule = StopRule(max_rounds=3, stop_when_no_improvement=False)
    h = History()
    h.add(crit(2, 2), "p0", 1, rule)
    assert h.decide_stop(rule, "p1", 1) == ""
    h.add(crit(2.5, 2.5), "p1", 1, rule)
    assert h.decide_stop(rule, "p2", 1) == ""
    h.add(crit(2, 2.5), "p2", 1, rule)
    assert "maximum of 3" in h.decide_stop(rule, "p3", 1)
    assert h.best == 1


def test_stops_when_the_score_stops_improving():
    rule = StopRule(max_rounds=5)
    h = History()
    h.add(crit(2.5, 2.5), "p0", 1, rule)
    h.add(crit(2, 2.5), "p1", 1, rule)
    assert "did not improve" in h.decide_stop(rule, "p2", 1)
    assert h.best == 0


def test_unreadable_round_is_never_best_and_never_stops_as_good():
    rule = StopRule(max_rounds=4)
    h = History()
    h.add(UNREADABLE, "p0", 1, rule)
    assert h.best is None and not h.rounds[0].good
    assert h.decide_stop(rule, "p1", 1) == ""
    h.add(crit(1.5, 1.5), "p1", 1, rule)
    assert h.best == 1
    h.add(UNREADABLE, "p2", 1, rule)
    assert h.best == 1
    assert "no round could be scored" not in h.table()


def test_no_proposed_change_stops_instead_of_repeating_the_round():
    rule = StopRule(max_rounds=4)
    h = History()
    h.add(crit(2, 2), "same prompt", 5, rule)
    assert "no change" in h.decide_stop(rule, "same prompt", 5)
    assert "no change" in h.decide_stop(rule, None, 5)
    assert h.decide_stop(rule, "same prompt", 6) == ""      # a new seed is a real new round


def test_history_round_trips_through_json_without_nan():
    rule = StopRule()
    h = History()
    h.add(UNREADABLE, "p0", 1, rule)
    h.add(crit(3, 3), "p1", 1, rule)
    h.stop_reason = "done"
    text = h.to_json()
    assert "NaN" not in text
    back = History.from_json(text)
    assert back.best == 1 and back.rounds[0].overall is None and back.stop_reason == "done"


def test_best_round_ties_go_to_the_earlier_round_and_seed_policies():
    h = History()
    rule = StopRule()
    h.add(crit(2, 2), "a", 1, rule)
    h.add(crit(2, 2), "b", 1, rule)
    assert best_round(h.rounds) == 0
    assert next_seed(41, "same") == 41 and next_seed(41, "increment") == 42
    with pytest.raises(ValueError):
        next_seed(1, "random")
    assert math.isnan(UNREADABLE.overall())
