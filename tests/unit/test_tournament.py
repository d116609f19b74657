"""The pairwise tournament: comparison count, determinism, position bias, Bradley-Terry, with the critic."""
from __future__ import annotations

import math

import pytest
from PIL import Image

from rationalrewards.backends.base import GenerationOptions
from rationalrewards.critic.critic import Critic
from rationalrewards.critic.tournament import (Match, bradley_terry, max_comparisons, merge_tournament, pairwise_rank)
from tests.fixtures.fake_openai import FakeOpenAI
from tests.unit.toolkit_answers import pairwise_answer

QUALITY = [3, 9, 1, 7, 5, 8, 2, 6, 4, 0, 11, 10]     # candidate i's hidden quality


def oracle(calls: list):
    def compare(pairs):
        calls.append(list(pairs))
        return [1.0 if QUALITY[i] > QUALITY[j] else 0.0 if QUALITY[i] < QUALITY[j] else 0.5 for i, j in pairs]
    return compare


def true_order(n):
    return sorted(range(n), key=lambda i: -QUALITY[i])


@pytest.mark.parametrize("n", [1, 2, 5, 8, 12])
def test_consistent_judge_gives_exact_order_within_n_log_n(n):
    calls: list = []
    res = merge_tournament(n, oracle(calls), seed=3)
    assert res.order == true_order(n)
    assert res.comparisons == sum(len(c) for c in calls) <= max_comparisons(n)
    if n >= 8:
        assert len(calls) < res.comparisons                  # batched: several comparisons per call
    if n > 1:
        assert sorted(range(n), key=lambda i: -res.bt[i])[0] == res.order[0]
        assert res.wins[res.order[0]] == res.played[res.order[0]]   # the best never lost


def test_same_seed_same_bracket_other_seed_other_bracket():
    a = merge_tournament(12, oracle([]), seed=7)
    b = merge_tournament(12, oracle([]), seed=7)
    c = merge_tournament(12, oracle([]), seed=8)
    assert a.matches == b.matches and a.bt == b.bt
    assert a.order == c.order and a.matches != c.matches


def test_both_orders_cancels_position_bias():
    def biased(towards_a: bool):     # a judge that favours one position by 1.5 quality points
        bonus = 1.5 if towards_a else -1.5
        return lambda pairs: [1.0 if QUALITY[i] + bonus > QUALITY[j] else 0.0 for i, j in pairs]
    to_a = merge_tournament(12, biased(True), seed=1, both_orders=True)
    to_b = merge_tournament(12, biased(False), seed=1, both_orders=True)
    assert to_a.order == to_b.order                  # which side the judge favours no longer matters
    assert merge_tournament(12, biased(True), seed=1).order != merge_tournament(12, biased(False), seed=1).order
    assert to_a.comparisons <= max_comparisons(12, both_orders=True)
    assert {(m.first, m.second) for m in to_a.matches} == {(m.second, m.first) for m in to_a.matches}
    best = to_a.order[0]
    assert QUALITY[best] >= sorted(QUALITY[:12])[-2]        # close calls are ties, clear ones right


def test_bradley_terry_recovers_strength_order_and_handles_unbeaten():
    matches = [Match(0, 1, 1.0), Match(1, 2, 1.0), Match(0, 2, 1.0), Match(2, 1, 0.5), Match(0, 1, None)]
    bt = bradley_terry(3, matches)
    assert bt[0] > bt[1] > bt[2] and all(math.isfinite(x) for x in bt)
    assert abs(sum(bt)) < 1e-9


def test_pairwise_rank_with_the_critic_over_a_server():
    # image i's colour carries its quality: the fake server reads the tag from the prompt order of images
    def answer(body):
        import base64, io
        urls = [p["image_url"]["url"] for p in body["messages"][-1]["content"] if p.get("type") == "image_url"]
        q = [Image.open(io.BytesIO(base64.b64decode(u.split(",", 1)[1]))).getpixel((0, 0))[0] for u in urls]
        return pairwise_answer({"text_faithfulness": 1 + q[0] / 100}, {"text_faithfulness": 1 + q[1] / 100})
    from rationalrewards.backends.openai_server import OpenAIServerBackend
    images = [Image.new("RGB", (32, 32), (q * 20, 0, 0)) for q in QUALITY[:6]]
    with FakeOpenAI(answer=answer) as peer:
        critic = Critic(backend=OpenAIServerBackend(peer.url, "critic", max_concurrency=4))
        res, crits = pairwise_rank(critic, images, "a red square", GenerationOptions(max_new_tokens=8), seed=2)
        assert len(peer.chat_requests()) == res.comparisons == len(crits)
    assert res.order == true_order(6)


def test_matches_are_decided_by_the_scores_under_the_compare_rule():
    """The stated winner is not the verdict: ``rules.decide`` sums the scores (as Compare does), and
    under ``strict`` an unreadable score leaves the match undecided (kept in bracket order, no win)."""
    from rationalrewards.backends.openai_server import OpenAIServerBackend
    from tests.twins import pairwise_answer as twin_answer
    # image 0 scores higher than image 1 but the answer names B; the third dimension is unreadable for B
    answer = twin_answer([(4, 2, "Image B"), (3, 3, "It's a tie"), (3, "??", "Image B")])
    images = [Image.new("RGB", (16, 16), (c, 0, 0)) for c in (10, 200)]
    with FakeOpenAI(answer=answer) as peer:
        critic = Critic(backend=OpenAIServerBackend(peer.url, "critic", max_concurrency=2))
        published, _ = pairwise_rank(critic, images, "a red square", GenerationOptions(max_new_tokens=8), seed=0)
        strict, _ = pairwise_rank(critic, images, "a red square", GenerationOptions(max_new_tokens=8), seed=0,
                                  rule="strict")
        with pytest.raises(ValueError, match="unknown decision rule"):
            pairwise_rank(critic, images, "x", GenerationOptions(max_new_tokens=8), rule="stated")
    [m] = published.matches
    assert m.result == (1.0 if m.first == 0 else 0.0)       # 4+3+3 against 2+3+2.5: image 0 wins
    [m] = strict.matches
    assert m.result is None and strict.wins == [0, 0]          # undecided: no win for either
