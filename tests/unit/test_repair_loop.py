"""The region repair loop's core (grounding/repair.py on judging/loop.py): each round's regions come from
the best image's own critique, masks are capped, the best image is kept, and the stop reasons are the
critique loops' shared ones plus "nothing to repair".

The driver below does what the two ComfyUI nodes do, with scripted critiques and a fake localiser that
masks a fixed rectangle per phrase; its "inpainting" paints the mask with the round's seed as a colour,
so which image a round started from can be read back from the pixels."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from rationalrewards.grounding.detect import Detection, as_bounding_boxes
from rationalrewards.grounding.localise import ImageLocalisation
from rationalrewards.grounding.masks import tint
from rationalrewards.grounding.phrases import pick_phrases
from rationalrewards.grounding.repair import (Judged, RepairHistory, RepairOptions, RepairState, mask_area,
                                              plan_regions, with_body_mask)
from rationalrewards.judging.cards import repair_card
from rationalrewards.judging.loop import History, LoopState, StopRule
from rationalrewards.judging.parser import parse_critique

H = W = 20
REQUEST = "a woman waving, holding a sign that reads OPEN"
RULE = StopRule(dimensions=("text_faithfulness", "physical_quality", "text_rendering"), max_rounds=4)
# phrase -> (y0, y1, x0, x1): where the fake localiser finds it
REGIONS = {"woman's left hand": (2, 6, 2, 6), "sign text": (10, 14, 10, 16), "red umbrella": (0, 20, 0, 20),
           "blue kite": (14, 18, 2, 5)}


def crit(tf, pq, tr, pq_why="It looks right.", tr_why="The text is right.") -> object:
    return parse_critique(
        f"1. Text Faithfulness:\n## Justification: Matches the request.\n## Score: {tf}\n"
        f"2. Physical and Visual Quality:\n## Justification: {pq_why}\n## Score: {pq}\n"
        f"3. Text Rendering:\n## Justification: {tr_why}\n## Score: {tr}\n# Summary: s\n## Refined Request: r")


HAND = "The woman's left hand has six fingers."
SIGN = "The sign text is misspelled as OPNE."
UNREADABLE = parse_critique("the model rambled and wrote no scores")


def localise(texts: list[str], grow: int = 0) -> ImageLocalisation:
    """A fake localisation: each known phrase masks its rectangle (grown by ``grow``)."""
    masks = torch.zeros((len(texts), H, W))
    dets = []
    for i, t in enumerate(texts):
        if t in REGIONS:
            y0, y1, x0, x1 = REGIONS[t]
            masks[i, max(0, y0 - grow):y1 + grow, max(0, x0 - grow):x1 + grow] = 1
            dets.append(Detection(t, i, (float(x0), float(y0), float(x1), float(y1)), 0.9, 0.8))
    regions = np.stack([m.numpy() > 0 for m in masks]) if texts else np.zeros((0, H, W), bool)
    return ImageLocalisation(texts, dets, regions, masks, masks.amax(0) if texts else torch.zeros(H, W))


def image(value: float = 0.5) -> torch.Tensor:
    return torch.full((1, H, W, 3), value)


def plan(state: RepairState, options: RepairOptions = RepairOptions(), grounding: bool = True) -> RepairState:
    """What Repair Loop Start does: phrases from the best image's critique, localised, the mask planned."""
    s = state.subject
    pick = pick_phrases(state.critiques[s], state.requests[s], "justifications", max_regions=4, score_below=3.5)
    texts = [p.text for p in pick.phrases]
    loc = localise(texts) if grounding else None
    return state.planned(plan_regions(state.round, s, state.seed, texts, loc, options, pick.notes))


def inpaint(state: RepairState) -> torch.Tensor:
    """A body that marks what it inpaints: the mask painted with the seed's colour, over Start's image."""
    base = state.kept[state.plan.subject].clone()
    m = (state.plan.mask > 0)[None, :, :, None]
    return torch.where(m, torch.full_like(base, (state.plan.seed % 97) / 100), base)


def run(critiques, *, rule=RULE, options=RepairOptions(), seed_policy="increment", seed=10, original=None):
    """Round 0 judged, then repair rounds with the scripted critiques until the loop stops."""
    state = RepairState.begin(image(), original or crit(3, 1.5, 2, HAND, SIGN), REQUEST, seed=seed, options=options)
    state = state.record(state.original, rule, seed_policy=seed_policy)
    steps = [state]
    scripted = iter(critiques)
    while not state.done:
        state = plan(state, options)
        if not state.repairing:
            break
        state = state.record(Judged(inpaint(state), (next(scripted),), REQUEST), rule, seed_policy=seed_policy)
        steps.append(state)
    return state, steps


# --- the scenarios of the issue -----------------------------------------------------------------------

def test_round_one_fixes_one_region_round_two_the_other_and_the_loop_stops_clean():
    state, _ = run([crit(3, 3.5, 2, tr_why=SIGN), crit(3.5, 3.5, 3.5)])
    h = state.history
    assert [r.index for r in h.rounds] == [0, 1, 2]
    assert h.rounds[0].subject is None and h.rounds[0].phrases == []            # round 0: the image as given
    # round 1's regions come from round 0's critique, round 2's from round 1's: the fixed hand is not masked again
    assert h.rounds[1].phrases == ["woman's left hand", "sign text"] and h.rounds[1].subject == 0
    assert h.rounds[2].phrases == ["sign text"] and h.rounds[2].subject == 1
    assert h.rounds[1].mask_area == pytest.approx((16 + 24) / 400) and h.rounds[2].mask_area == pytest.approx(24 / 400)
    assert [r.before for r in h.rounds] == [None, h.rounds[0].overall, h.rounds[1].overall]
    assert h.rounds[2].good and "round 2 meets the stop rule" in h.stop_reason
    assert h.best == state.result_round == 2
    assert [m is None for m in state.masks] == [True, False, False]


def test_the_next_round_repairs_the_best_image_so_far_by_its_pixels():
    state, steps = run([crit(3, 3.5, 2, tr_why=SIGN), crit(3.5, 3.5, 3.5)], seed=40)
    round1, round2 = state.kept[1], state.kept[2]
    hand, sign = (2, 3), (11, 12)
    assert round1[0, hand[0], hand[1], 0] == pytest.approx(0.40)               # round 1 painted the hand (seed 40)
    assert round2[0, hand[0], hand[1], 0] == pytest.approx(0.40)               # ...and round 2 started from it
    assert round2[0, sign[0], sign[1], 0] == pytest.approx(0.41)               # round 2's own mark (seed 41)
    assert state.kept[0][0, 0, 0, 0] == 0.5 and round2[0, 0, 0, 0] == 0.5      # outside every mask: untouched
    assert steps[1].subject == 1                                               # planned from round 1, the best


def test_a_worse_round_keeps_the_best_and_stops_on_no_improvement():
    state, _ = run([crit(2, 1, 1, pq_why=HAND, tr_why=SIGN)])
    h = state.history
    assert len(h.rounds) == 2 and h.best == 0 and state.result_round == 0
    assert "round 1 did not improve on the best score" in h.stop_reason
    assert torch.equal(state.kept[state.result_round], image())                # the image as given comes back


def test_when_a_worse_round_is_not_a_stop_the_next_round_repairs_the_best_not_the_last():
    rule = StopRule(dimensions=RULE.dimensions, max_rounds=3, stop_when_no_improvement=False)
    state, steps = run([crit(2, 1, 1, pq_why=HAND, tr_why=SIGN), crit(3, 2, 2, pq_why=HAND, tr_why=SIGN),
                        crit(3, 2, 2, pq_why=HAND, tr_why=SIGN)], rule=rule)
    h = state.history
    assert [r.subject for r in h.rounds[1:]] == [0, 0, 2]          # round 1 was worse: round 2 repairs round 0 again
    assert [r.seed for r in h.rounds[1:]] == [10, 11, 12]           # a retry of the same regions with a new seed
    assert "maximum of 3 repair round(s)" in h.stop_reason and h.best == 2


def test_a_round_with_no_phrases_stops_at_once():
    strict = StopRule(dimensions=RULE.dimensions, threshold=4.0)
    state, _ = run([], original=crit(3.5, 3.5, 3.75), rule=strict)  # fails the rule; nothing below 'fix scores below'
    assert len(state.history.rounds) == 1 and not state.repairing
    assert "the critique of round 0 names no region to repair" in state.history.stop_reason
    assert "nothing to fix" in state.history.stop_reason
    state, _ = run([], original=crit(3.5, 3.5, 3.5))                # meets the rule: judged, never repaired
    assert "round 0 meets the stop rule" in state.history.stop_reason and state.plan is None


def test_nothing_found_stops_and_says_what_was_searched():
    state, _ = run([], original=crit(3, 2, 3.5, pq_why="The dog's collar is broken."))
    assert len(state.history.rounds) == 1 and state.plan.phrases == ("dog's collar",)
    assert state.history.stop_reason.startswith("no region found in round 0's image for \"dog's collar\"")


def test_a_mask_over_the_cap_is_refused_and_reported():
    big = crit(3, 1.5, 3.5, pq_why="The red umbrella is distorted.")    # the umbrella region is the whole image
    state, _ = run([], original=big)
    assert len(state.history.rounds) == 1
    assert "round 1's mask was refused: 'red umbrella' 100% of the image is over the 50% cap" in state.history.stop_reason
    assert "regeneration, not a repair" in state.history.stop_reason
    # one region over the cap is left out, the others are repaired, and the round reports the refusal
    both = crit(3, 1.5, 2, pq_why="The red umbrella is distorted.", tr_why=SIGN)
    state, _ = run([crit(3.5, 3.5, 3.5)], original=both)
    r1 = state.history.rounds[1]
    assert r1.found == ["sign text"] and r1.refused == [{"phrase": "red umbrella", "area": 1.0}]
    assert "refused: red umbrella (100% of the image)" in state.history.table()


def test_the_union_of_small_regions_can_still_be_too_much():
    texts = ["woman's left hand", "sign text"]
    loc = localise(texts, grow=3)             # 81 and 120 of 400 pixels (20%, 30%), 4 shared: 197 together
    refused = plan_regions(1, 0, 5, texts, loc, RepairOptions(max_area=0.32))
    assert refused.mask is None and refused.refused == ()
    assert "the regions together cover 49% of the image, over the 32% cap" in refused.reason
    one = plan_regions(1, 0, 5, texts, loc, RepairOptions("per_phrase", max_area=0.32))
    assert one.runs and one.found == ("woman's left hand",) and one.area == pytest.approx(81 / 400)


def test_per_phrase_repairs_the_most_severe_region_per_round():
    original = crit(3, 1.5, 2.5, pq_why=HAND, tr_why=SIGN)          # the hand is severe, the sign text clear
    state, _ = run([crit(3, 3.5, 2.5, tr_why=SIGN), crit(3.5, 3.5, 3.5)], original=original,
                   options=RepairOptions("per_phrase"))
    assert [r.found for r in state.history.rounds[1:]] == [["woman's left hand"], ["sign text"]]
    assert state.history.rounds[1].phrases == ["woman's left hand", "sign text"]   # both named, one repaired


def test_an_unreadable_critique_in_the_middle_is_never_best_and_the_next_round_repairs_the_best():
    state, _ = run([UNREADABLE, crit(3, 3.5, 2, tr_why=SIGN), crit(3.5, 3.5, 3.5)])
    h = state.history
    assert h.rounds[1].overall is None and not h.rounds[1].good
    assert [r.subject for r in h.rounds[1:]] == [0, 0, 2]           # round 2 repairs round 0, not the unreadable one
    assert h.best == 3 and "round 3 meets the stop rule" in h.stop_reason
    assert torch.equal(state.kept[2][0, 0, 0], state.kept[0][0, 0, 0])
    lost = run([UNREADABLE], original=UNREADABLE, rule=StopRule(max_rounds=1))[0]
    assert lost.best_round is None and lost.result_round == 0       # none readable: the image as given


def test_a_round_that_would_repeat_an_earlier_one_stops():
    rule = StopRule(dimensions=RULE.dimensions, max_rounds=4, stop_when_no_improvement=False)
    state, _ = run([crit(2, 1, 1, pq_why=HAND, tr_why=SIGN)], rule=rule, seed_policy="same")
    assert len(state.history.rounds) == 2                           # round 2 = round 1's image, regions and seed
    assert "round 2 would repeat round 1" in state.history.stop_reason and "increment" in state.history.stop_reason


def test_max_rounds_counts_repairs_not_the_image_as_given():
    rule = StopRule(dimensions=RULE.dimensions, max_rounds=1)
    state, _ = run([crit(3, 2, 2, pq_why=HAND, tr_why=SIGN)], rule=rule)
    assert len(state.history.rounds) == 2 and "maximum of 1 repair round(s)" in state.history.stop_reason


def test_a_mask_from_the_loops_own_localiser_is_checked_against_the_cap():
    state = RepairState.begin(image(), crit(3, 1.5, 2, HAND, SIGN), REQUEST, seed=3)
    state = plan(state.record(state.original, RULE), grounding=False)
    assert state.repairing and state.plan.mask is None and state.plan.phrases == ("woman's left hand", "sign text")
    masks = torch.zeros((2, H, W))
    masks[0, :4, :5], masks[1, 10:12, :10] = 1, 1                   # two detections: their union counts
    judged = Judged(image(0.3), (crit(3, 3.5, 3.5),), REQUEST)
    done = state.record(judged, RULE, body_mask=masks)
    assert done.history.rounds[1].mask_area == pytest.approx(40 / 400) and torch.equal(done.masks[1], masks.amax(0))
    empty = state.record(judged, RULE, body_mask=torch.zeros((1, H, W)))
    assert len(empty.history.rounds) == 1 and "is empty" in empty.history.stop_reason
    full = state.record(judged, RULE, body_mask=torch.ones((H, W)))
    assert len(full.history.rounds) == 1 and "masked 100% of the image, over the 50% cap" in full.history.stop_reason
    fresh = RepairState.begin(image(), crit(3, 2, 2), REQUEST)
    with pytest.raises(ValueError, match="plans each round"):
        fresh.record(fresh.original, RULE).record(judged, RULE)


# --- the shared loop logic ------------------------------------------------------------------------------

def test_the_stop_rules_are_the_refine_loops_not_a_copy():
    """The same score sequence gives the same decisions in both loops (the repair loop's round 0 is
    uncounted, so its max rounds is one more round of history)."""
    scores = [(3, 2, 2), (2.5, 2, 2), (3, 2.5, 2)]
    for no_improvement in (True, False):
        refine_rule = StopRule(dimensions=RULE.dimensions, max_rounds=3, stop_when_no_improvement=no_improvement)
        repair_rule = StopRule(dimensions=RULE.dimensions, max_rounds=2, stop_when_no_improvement=no_improvement)
        refine = LoopState.start("p", 1)
        for i, s in enumerate(scores):
            refine = refine.record([crit(*s)], [f"img{i}"], refine_rule, seed_policy="increment")
            if refine.done:
                break
        repair, _ = run([crit(*s, pq_why=HAND, tr_why=SIGN) for s in scores[1:]], rule=repair_rule,
                        original=crit(*scores[0], pq_why=HAND, tr_why=SIGN))
        assert len(repair.history.rounds) == len(refine.history.rounds)
        assert repair.history.best == refine.history.best
        assert repair.history.stop_reason.replace("repair round", "round") == refine.history.stop_reason.replace(
            "maximum of 3", "maximum of 2")
    assert RepairHistory.stop_reason_for is History.stop_reason_for and RepairHistory.add_round is History.add_round


def test_states_are_values_and_history_round_trips_through_json():
    state = RepairState.begin(image(), crit(3, 1.5, 2, HAND, SIGN), REQUEST, seed=3)
    judged = state.record(state.original, RULE)
    assert state.history.rounds == [] and state.kept == () and judged.round == 1 and judged.seed == 3
    planned = plan(judged)
    after = planned.record(Judged(inpaint(planned), (UNREADABLE,), REQUEST), RULE)
    assert len(planned.history.rounds) == 1 and after.seed == 4
    text = after.history.to_json()
    assert "NaN" not in text
    back = RepairHistory.from_json(text)
    assert back.rounds == after.history.rounds and back.best == 0
    assert after.history.table().splitlines()[:3] == [
        "round 0 (as given): overall 0.389  <- best",
        "round 1: repaired round 0, overall 0.389 -> unreadable seed 3",
        "    regions: woman's left hand, sign text; masked 10.0% of the image"]
    with pytest.raises(ValueError, match="cap"):
        RepairOptions(max_area=0)
    with pytest.raises(ValueError, match="mask mode"):
        RepairOptions("each")


def test_repair_card_payload_holds_the_rounds_titles_statuses_and_thumbnails():
    state, _ = run([crit(3, 3.5, 2, tr_why=SIGN), crit(3.5, 3.5, 3.5)])
    thumbs = [{"image": {"filename": f"r{i}.png"}} for i in range(3)]
    [card] = repair_card(state.history, state.critiques, thumbs)["rr_repair"]
    assert card["rounds"] == json.loads(state.history.to_json())["rounds"] and card["best"] == 2
    assert card["thumbs"] == thumbs and card["titles"]["text_rendering"] == "Text Rendering"
    assert card["statuses"][0] == {"text_faithfulness": "ok", "physical_quality": "ok", "text_rendering": "ok"}
    assert card["rounds"][1]["phrases"] == ["woman's left hand", "sign text"] and card["labels"]["missing"] == "unreadable"


def test_mask_helpers_tint_measure_and_box():
    img = torch.zeros((1, 4, 4, 4))
    mask = torch.zeros((2, 2))
    mask[0, 0] = 1
    shown = tint(img, mask, color=(1.0, 0.0, 0.0), alpha=1.0)
    assert shown.shape == (1, 4, 4, 3) and shown[0, 0, 0, 0] == 1.0 and shown[0, 3, 3, 0] == 0.0
    assert torch.equal(tint(img, None), img[..., :3])
    assert mask_area(mask) == 0.25 and mask_area(torch.zeros(0)) == 0.0
    [box] = as_bounding_boxes([Detection("left hand", 0, (2.0, 3.0, 10.0, 7.0), 0.8, 0.7)])
    assert box == {"x": 2.0, "y": 3.0, "width": 8.0, "height": 4.0, "score": 0.8, "label": "left hand"}
    plan_ = with_body_mask(plan_regions(1, 0, 1, ["x"], None), torch.ones(1, 0, 0), RepairOptions())
    assert "is empty" in plan_.reason


def test_the_phrase_notes_travel_with_the_round_and_explain_a_stop():
    fallback = "the critic's follow-up answer was unreadable; phrases come from the justifications"
    state = RepairState.begin(image(), crit(3, 2, 2, HAND, SIGN), REQUEST, seed=1)
    state = state.record(state.original, RULE)
    state = state.planned(plan_regions(1, 0, 1, ["sign text"], localise(["sign text"]), notes=[fallback]))
    state = state.record(Judged(inpaint(state), (crit(3, 2.5, 2),), REQUEST), RULE)
    assert state.history.rounds[1].note == fallback and state.history.rounds[1].found == ["sign text"]
    none = plan_regions(2, 1, 2, [], None, notes=["every dimension scored 3.5 or more: nothing to fix",
                                                  "no defect phrases: Localise Defects will return an empty mask"])
    assert none.reason == ("the critique of round 1 names no region to repair (every dimension scored 3.5 or more: "
                           "nothing to fix)")
