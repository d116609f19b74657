"""The Rank node's pairwise mode in the real server: a merge tournament through the critic, the bracket's
wins and Bradley-Terry scores on the card, deterministic for a seed."""
from __future__ import annotations

import json

import pytest

from rationalrewards.critic.tournament import max_comparisons, merge_tournament
from tests.comfy_server import Graph, execution_error, outputs
from tests.twins import pairwise_answer

pytestmark = pytest.mark.integration


def test_pairwise_rank_runs_a_seeded_tournament(comfy_server, models_dir):
    # the scripted judge always prefers image A: the result is the seeded bracket's own order
    answer = pairwise_answer([(4, 2, "Image A"), (3, 3, "It's a tie"), ("N/A", "N/A", "N/A")])
    g = Graph()
    critic = g.node("RR_LoadCritic", checkpoint=models_dir.critic, custom_id="", allow_download=False, dtype="auto",
                    device="auto", attention="sdpa", max_pixels=0, batch_size=4)
    replay = g.node("RR_ReplayAnswers", critic=critic, script=json.dumps([{"answer": answer, "mode": "pairwise"}]))
    seed = comfy_server.fresh_seed()
    imgs = g.node("EmptyImage", width=32, height=32, batch_size=5, color=seed % 0xFFFFFF)
    rank = g.node("RR_Rank", critic=replay, images=imgs, prompt="a red cat", weights="equal", max_new_tokens=300,
                  temperature=0.0, seed=11, mode="pairwise", both_orders=False)
    table = g.node("PreviewAny", source=rank.out(4))
    out = outputs(comfy_server.run(g, timeout=300))
    [card] = out[rank.id]["rr_rank"]
    expected = merge_tournament(5, lambda pairs: [1.0] * len(pairs), seed=11)
    assert [r["index"] for r in card["rows"]] == expected.order
    assert card["mode"] == "pairwise" and card["comparisons"] == expected.comparisons <= max_comparisons(5)
    assert [r["wins"] for r in card["rows"]] == [expected.wins[i] for i in expected.order]
    assert all(r["played"] >= 1 for r in card["rows"])
    data = json.loads(out[table.id]["text"][0])
    assert data["comparisons"] == expected.comparisons and data["seed"] == 11


def test_pairwise_matches_follow_the_decision_rule_and_refine_says_what_to_connect(comfy_server, models_dir):
    """The answer names Image B but scores A higher with one unreadable score: the published rule sums
    (A wins), strict leaves the match undecided; Refine Prompt on pairwise critique_data says what to do."""
    answer = pairwise_answer([(4, 2, "Image B"), (3, 3, "It's a tie"), (3, "??", "Image B")])
    g = Graph()
    critic = g.node("RR_LoadCritic", checkpoint=models_dir.critic, custom_id="", allow_download=False, dtype="auto",
                    device="auto", attention="sdpa", max_pixels=0, batch_size=4)
    replay = g.node("RR_ReplayAnswers", critic=critic, script=json.dumps([{"answer": answer, "mode": "pairwise"}]))
    imgs = g.node("EmptyImage", width=32, height=32, batch_size=2, color=comfy_server.fresh_seed() % 0xFFFFFF)
    tables = {}
    for rule in ("published", "strict"):
        rank = g.node("RR_Rank", critic=replay, images=imgs, prompt="a red cat", weights="equal", max_new_tokens=300,
                      temperature=0.0, seed=3, mode="pairwise", both_orders=False, decision=rule)
        tables[rule] = g.node("PreviewAny", source=rank.out(4))
    out = outputs(comfy_server.run(g, timeout=300))
    published, strict = (json.loads(out[tables[r].id]["text"][0]) for r in ("published", "strict"))
    first = merge_tournament(2, lambda pairs: [1.0] * len(pairs), seed=3).order[0]   # shown as image A
    assert published["decision"] == "published" and published["rows"][0]["index"] == first
    assert [r["wins"] for r in published["rows"]] == [1, 0]
    assert strict["decision"] == "strict" and [r["wins"] for r in strict["rows"]] == [0, 0]

    g2 = Graph()
    critic = g2.node("RR_LoadCritic", checkpoint=models_dir.critic, custom_id="", allow_download=False, dtype="auto",
                     device="auto", attention="sdpa", max_pixels=0, batch_size=4)
    replay = g2.node("RR_ReplayAnswers", critic=critic, script=json.dumps([{"answer": answer, "mode": "pairwise"}]))
    imgs = g2.node("EmptyImage", width=32, height=32, batch_size=2, color=comfy_server.fresh_seed() % 0xFFFFFF)
    rank = g2.node("RR_Rank", critic=replay, images=imgs, prompt="a red cat", weights="equal", max_new_tokens=300,
                   temperature=0.0, seed=3, mode="pairwise", both_orders=False)
    refine = g2.node("RR_RefinePrompt", critique_data=rank.out(5), mode="merge", keep="", pick="best")
    g2.node("PreviewAny", source=refine.out(0))
    err = execution_error(comfy_server.run(g2, check=False, timeout=300))
    assert err is not None and "Rank Images in pairwise mode" in err["exception_message"]
    assert "critique Rank's 'best' output" in err["exception_message"]
