"""Issue #23, server death: the critic server dies in the middle of a Rank batch and in the middle of a
Refine Loop queued in the real ComfyUI server. ComfyUI stays up, the error names the node, the server and
the fix, what finished before the death is in the history, and the same workflow queued again once the
server is back (same port) completes.

The peer (tests/fixtures/fake_openai.py, ``die_at``) dies like a killed process: it stops listening and
drops every connection, the request in flight unanswered. ``retries=1`` keeps the backoff to about a
second; the default (3 retries) takes 1 + 2 + 4 s plus jitter before the error shows."""
from __future__ import annotations

import json

import pytest

from rationalrewards.judging.parser import parse_critique
from tests.comfy_server import Graph, execution_error, images, outputs
from tests.fixtures.fake_openai import FakeOpenAI
from tests.integration.test_server_critic import KEY_ENV, MODEL, connect, sent_image
from tests.twins import for_tests, load_twin, pointwise_answer

pytestmark = pytest.mark.integration

SCORES = {0x10: (2, 2), 0x20: (4, 3.5), 0x30: (1.5, 1), 0x40: (3, 3)}   # red channel of a candidate -> scores
ROUND0 = "a red fox sitting in fresh snow"
REFINED = "a red fox sitting in deep fresh snow at sunrise, sharp focus, golden light"


def judge_by_colour(body: dict) -> str:
    tf, pq = SCORES[sent_image(body).getpixel((0, 0))[0]]
    return pointwise_answer(tf, pq)


def rank_graph(peer_url: str, seed: int) -> tuple[Graph, object]:
    g = Graph()
    critic = connect(g, peer_url, max_concurrency=1, retries=1, timeout_s=20 + seed % 7)
    batch = None
    for red in SCORES:
        img = g.node("EmptyImage", width=32, height=32, batch_size=1, color=(red << 16) | (seed % 0xFFFF))
        batch = img if batch is None else g.node("ImageBatch", image1=batch, image2=img)
    rank = g.node("RR_Rank", critic=critic, images=batch, prompt=f"a red cat {seed}", weights="equal",
                  max_new_tokens=256, temperature=0.0, seed=seed % 2**32, mode="pointwise")
    return g, rank


def assert_names_server_and_fix(err: dict, url: str, node_title: str) -> None:
    msg = err["exception_message"]
    assert msg.startswith(f"{node_title}: "), msg
    assert f"cannot reach the critic server at {url}/chat/completions" in msg, msg
    assert "(tried 2 times); start the server (e.g. `vllm serve ...`) or fix base_url" in msg, msg


def test_rank_batch_survives_the_server_dying_and_runs_once_it_is_back(comfy_server):
    seed = comfy_server.fresh_seed()
    with FakeOpenAI(models=(MODEL,), answer=judge_by_colour, die_at=3) as peer:
        g, rank = rank_graph(peer.url, seed)
        entry = comfy_server.run(g, timeout=120, check=False)
        port, url = peer.port, peer.url
        assert peer.dead and len(peer.chat_requests()) == 3     # two answered, the third never was
    assert comfy_server.server.alive()
    err = execution_error(entry)
    assert err is not None and err["node_id"] == rank.id and err["node_type"] == "RR_Rank"
    assert_names_server_and_fix(err, url, "Rank Images")
    assert "The batch stopped after 2 of 4 critiques; run it again once the server answers." in \
        err["exception_message"]
    assert comfy_server.queue_state()["queue_running"] == []

    with FakeOpenAI(models=(MODEL,), answer=judge_by_colour, port=port) as back:   # the server returns
        again = comfy_server.run(g, timeout=120)
        assert len(back.chat_requests()) == 4 and back.calls()[0] == "POST /v1/chat/completions"  # connect was cached
    [card] = outputs(again)[rank.id]["rr_rank"]
    overall = [parse_critique(pointwise_answer(tf, pq)).overall("equal") for tf, pq in SCORES.values()]
    order = sorted(range(len(SCORES)), key=lambda i: -overall[i])
    assert [r["index"] for r in card["rows"]] == order == [1, 3, 0, 2]
    assert [c["overall"] for c in card["critiques"]] == pytest.approx([overall[i] for i in order])


def loop_graph(peer_url: str, models_dir, seed: int) -> dict:
    api = for_tests(load_twin("t2i_refine_loop"), models_dir, seed, max_new_tokens=600)
    [loader] = [nid for nid, n in api.items() if n["class_type"] == "RR_LoadCritic"]
    api[loader] = {"class_type": "RR_ServerCritic",
                   "inputs": dict(base_url=peer_url, model=MODEL, api_key_env=KEY_ENV, max_concurrency=2,
                                  timeout_s=20 + seed % 7, retries=1, sleep_between_runs=False, max_pixels=0)}
    return api


def loop_answer(body: dict) -> str:
    if "golden light" in json.dumps(body):
        return pointwise_answer(3.5, 3, "N/A", refined="unused")
    return pointwise_answer(2, 2.5, "[2]", refined=REFINED)


def loop_reports(entry: dict) -> list[dict]:
    return [v["rr_loop"][0] for v in outputs(entry).values() if "rr_loop" in v]


def test_refine_loop_keeps_its_finished_round_when_the_server_dies(comfy_server, models_dir):
    seed = comfy_server.fresh_seed()
    with FakeOpenAI(models=(MODEL,), answer=loop_answer, die_at=2) as peer:
        api = loop_graph(peer.url, models_dir, seed)
        entry = comfy_server.run(api, timeout=300, check=False)
        port, url = peer.port, peer.url
        assert peer.dead and len(peer.chat_requests()) == 2   # round 0 answered, round 1's request unanswered
    assert comfy_server.server.alive()
    err = execution_error(entry)
    # ComfyUI 0.3.75 reports a failure inside an expanded round on the Loop End that expanded it; the message
    # names the node that failed
    assert err is not None and err["node_id"] in ("9", "10")
    assert_names_server_and_fix(err, url, "Critique Image")

    # round 0 is in the history: its card (prompt, scores, the refinement round 1 was running) ...
    [report] = loop_reports(entry)
    [round0] = report["rounds"]
    assert ROUND0 in round0["prompt"] and round0["refined_prompt"].startswith(REFINED)
    assert round0["scores"]["text_faithfulness"] == 2 and round0["scores"]["physical_quality"] == 2.5
    # ... and its image
    [shot] = [ref for nid, out in outputs(entry).items() if "rr_loop" in out for ref in out.get("images", [])]
    assert comfy_server.fetch_image(shot).size == (64, 64)

    with FakeOpenAI(models=(MODEL,), answer=loop_answer, port=port) as back:
        again = comfy_server.run(api, timeout=300)
        sent = [json.dumps(r.body) for r in back.chat_requests()]
    # round 0's critique came from ComfyUI's cache: only round 1 went to the returned server
    assert len(sent) == 1 and "golden light" in sent[0]
    final = max(loop_reports(again), key=lambda h: len(h["rounds"]))
    assert [r["good"] for r in final["rounds"]] == [False, True] and final["best"] == 1
    assert final["rounds"][0]["prompt"] == round0["prompt"]
    assert len(images(again, "12")) == 2
