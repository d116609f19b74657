"""Stop rule, keep-the-best and history of the Generate-Critique-Refine loop."""
from __future__ import annotations

import math

import pytest

from rationalrewards.judging.loop import History, LoopState, StopRule, best_round, next_seed, parse_stop_dimensions
from rationalrewards.judging.parser import parse_critique


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


# -- loop edges: ties, dips, recoveries (each one a plausible slip in the stop rule or keep-the-best) --

def run_rounds(rule: StopRule, critiques) -> tuple[History, list[str]]:
    """Feed ``critiques`` round by round as Loop End does; returns the history and each round's decision."""
    h, reasons = History(), []
    for i, c in enumerate(critiques):
        h.add(c, f"p{i}", 1, rule)
        reasons.append(h.decide_stop(rule, f"p{i + 1}", 1))
    return h, reasons


def test_a_tie_with_the_best_is_no_improvement():
    rule = StopRule(max_rounds=5, stop_when_no_improvement=True)
    h, reasons = run_rounds(rule, [crit(2.5, 2.5), crit(2.5, 2.5)])
    assert reasons[0] == ""
    assert "did not improve" in reasons[1] and "0.500" in reasons[1]
    assert h.best == 0                      # the earlier of two equal rounds


def test_a_tie_after_a_rise_still_stops():
    rule = StopRule(max_rounds=5)
    h, reasons = run_rounds(rule, [crit(2, 2), crit(2.5, 2), crit(2, 2.5)])   # 0.333, 0.417, 0.417
    assert reasons[:2] == ["", ""] and "did not improve" in reasons[2]
    assert h.best == 1


def test_a_strict_improvement_goes_on():
    rule = StopRule(max_rounds=5)
    _, reasons = run_rounds(rule, [crit(2.5, 2.5), crit(2.5, 2.75)])
    assert reasons == ["", ""]


def test_no_improvement_compares_with_the_best_so_far_not_the_previous_round():
    """0.556, unreadable, 0.5: the round before round 2 has no score to beat, but round 2 is below the best
    so far, so the loop stops there."""
    rule = StopRule(max_rounds=6)
    h, reasons = run_rounds(rule, [crit(3, 2.5, tr=2.5), UNREADABLE, crit(2.5, 2.5)])
    assert reasons[:2] == ["", ""]          # an unreadable round neither improves nor stops the loop
    assert "did not improve on the best score (0.556)" in reasons[2]
    assert h.best == 0


def test_decide_stop_reads_the_best_of_all_earlier_rounds():
    """The rule itself, on a history of 0.333, 0.667, 0.5, 0.583 (as a loop with the rule off leaves it):
    the last round beats the previous one but not the best."""
    rule_off = StopRule(max_rounds=6, stop_when_no_improvement=False)
    h, _ = run_rounds(rule_off, [crit(2, 2), crit(3, 2.5, tr=3.5), crit(2.5, 2.5), crit(2.75, 2.75)])
    rule_on = StopRule(max_rounds=6, stop_when_no_improvement=True)
    assert "did not improve on the best score (0.667)" in h.decide_stop(rule_on, "p4", 1)


def test_three_rounds_dip_then_recover_keep_the_best_across_the_dip():
    """No-improvement off: 0.5, 0.333 (dip), 0.417 (recovers, but not to round 0): best stays round 0 -
    the recovery beats the round before it, not the best."""
    rule = StopRule(max_rounds=3, stop_when_no_improvement=False)
    h, reasons = run_rounds(rule, [crit(2.5, 2.5), crit(2, 2), crit(2.5, 2)])
    assert reasons[:2] == ["", ""] and "maximum of 3" in reasons[2]
    assert [h.best] == [0] and best_round(h.rounds) == 0
    assert h.table().splitlines()[0].endswith("<- best")


def test_dip_then_recover_above_the_best_moves_the_best():
    rule = StopRule(max_rounds=3, stop_when_no_improvement=False)
    h, _ = run_rounds(rule, [crit(2.5, 2.5), crit(2, 2), crit(3, 2.75)])
    assert h.best == 2


def test_best_after_each_round_of_a_dip():
    """The best is tracked after every round, as Loop End reports it: 0, 0, 0, then 3."""
    rule = StopRule(max_rounds=4, stop_when_no_improvement=False)
    h, bests = History(), []
    for i, c in enumerate([crit(2.5, 2.5), crit(1.5, 1.5), crit(2, 2.25), crit(2.75, 2.5)]):
        h.add(c, f"p{i}", 1, rule)
        bests.append(h.best)
    assert bests == [0, 0, 0, 3]


# --- the typed loop state (what Loop Start/End pass; headless drivers reuse it) ------------------------

def test_loop_state_runs_rounds_and_returns_the_best_of_each_batch():
    rule = StopRule(max_rounds=3, stop_when_no_improvement=False)
    state = LoopState.start("a red cat <lora:x:0.5>", 7)
    assert (state.prompt, state.seed, state.round, state.done) == ("a red cat <lora:x:0.5>", 7, 0, False)
    # round 0: a batch of two images; the second is judged better and kept
    after0 = state.record([crit(1, 1, refined="weak"), crit(2, 2.5, refined="a red cat, sharp")], ["i0", "i1"], rule,
                          seed_policy="increment")
    assert state.history.rounds == [] and state.kept == ()           # states are values: the old one is unchanged
    assert not after0.done and after0.round == 1 and after0.seed == 8
    assert after0.prompt == "a red cat, sharp, <lora:x:0.5>"         # merge mode keeps the LoRA tag
    assert after0.kept == (["i1"],) and after0.batches == (["i0", "i1"],)
    assert after0.critiques[0].refined_request == "a red cat, sharp"
    after1 = after0.record([crit(2, 2)], ["j0"], rule, seed_policy="increment")
    after2 = after1.record([crit(2.5, 2)], ["k0"], rule, seed_policy="increment")
    assert after2.done and "maximum of 3" in after2.history.stop_reason
    assert after2.best_round == after2.result_round == 0 and after2.kept[after2.result_round] == ["i1"]
    assert [r.seed for r in after2.history.rounds] == [7, 8, 9]
    assert after2.round == 2 and after2.prompt == after1.prompt       # a finished loop does not advance


def test_loop_state_stops_on_the_rule_and_with_no_readable_round():
    good = LoopState.start("p", 1).record([crit(3, 3)], ["img"], StopRule())
    assert good.done and "meets the stop rule" in good.history.stop_reason and good.best_round == 0
    lost = LoopState.start("p", 1).record([UNREADABLE], ["img"], StopRule(max_rounds=1))
    assert lost.done and lost.best_round is None and lost.result_round == 0
    with pytest.raises(ValueError, match="prompt is empty"):
        LoopState.start("  ", 1)
    with pytest.raises(ValueError, match="at least one critique"):
        LoopState.start("p", 1).record([], [], StopRule())


def test_stop_dimensions_parse_keys_and_titles():
    assert parse_stop_dimensions("text_faithfulness, Physical Quality") == ("text_faithfulness", "physical_quality")
    for bad in ("", " , ", "text_faithfulness, sharpness"):
        with pytest.raises(ValueError, match="stop dimension.*Physical and Visual Quality"):
            parse_stop_dimensions(bad)
