"""What a user wires: each node output read downstream, in a real ComfyUI server.

The card payload (``rr_critiques`` ...) is what the node *shows*; these tests read what it *outputs*
into the graph instead: FLOAT sockets through ``PreviewAny``, IMAGE sockets through ``PreviewImage``
(pixels fetched back from /view), so a socket wired to the wrong value, weights that are ignored, a
winner image that is always A, or a batch that is not sorted turn red. Scores are scripted with
distinct values per dimension / per image, so every mix-up changes a number.
"""
from __future__ import annotations

import json
import math

import pytest

from tests.comfy_server import Graph, images, outputs
from tests.fixtures.fake_openai import FakeOpenAI
from tests.sent import sent_images
from tests.twins import pairwise_answer, pointwise_answer

pytestmark = pytest.mark.integration

SERVED = "rr-critic-wired"


def loader(g: Graph, models_dir):
    return g.node("RR_LoadCritic", checkpoint=models_dir.critic, custom_id="", allow_download=False, dtype="auto",
                  device="auto", attention="sdpa", max_pixels=0, batch_size=4)


def replay(g: Graph, critic, script: list[dict]):
    return g.node("RR_ReplayAnswers", critic=critic, script=json.dumps(script))


def rgb(color: int) -> tuple[int, int, int]:
    return (color >> 16) & 0xFF, (color >> 8) & 0xFF, color & 0xFF


def distinct_colors(seed: int, n: int) -> list[int]:
    """``n`` EmptyImage colours far apart (so a pixel read back names its image unambiguously)."""
    return [((seed + 40 * i) % 200 + 20) << 16 | (60 * i % 250) << 8 | (seed * 7 + 90 * i) % 256 for i in range(n)]


def floats(out: dict, show) -> list[float]:
    """The FLOATs a PreviewAny node received, in order (``nan`` stays NaN)."""
    return [float(t) for t in out[show.id]["text"]]


def pixels(comfy_server, entry, node) -> list[tuple[int, int, int]]:
    """Top-left pixel of every image an output node saved, in order."""
    return [comfy_server.fetch_image(ref).convert("RGB").getpixel((0, 0)) for ref in images(entry, node.id)]


def overall(*scores: float) -> float:
    return (sum(scores) / len(scores) - 1) / 3


# -- Critique Image / Critique Edit: every FLOAT socket ------------------------------------------------

def test_critique_image_float_outputs_carry_each_dimension_and_the_overall(comfy_server, models_dir):
    seed = comfy_server.fresh_seed()
    prompt = f"a red cat holding a sign that says HI, take {seed}"
    g = Graph()
    critic = replay(g, loader(g, models_dir), [{"answer": pointwise_answer(3.5, 2, "1.5", refined="a sharper cat"),
                                                "when_request_contains": prompt}])
    img = g.node("EmptyImage", width=64, height=64, batch_size=1, color=seed % 0xFFFFFF)
    crit = g.node("RR_CritiqueImage", critic=critic, image=img, prompt=prompt, weights="equal",
                  max_new_tokens=400, temperature=0.0, seed=0)
    shows = [g.node("PreviewAny", source=crit.out(i)) for i in range(6)]
    out = outputs(comfy_server.run(g, timeout=180))
    tf, pq, tr, total = (floats(out, s) for s in shows[:4])
    assert (tf, pq, tr) == ([3.5], [2.0], [1.5])
    assert total == [pytest.approx(overall(3.5, 2, 1.5))]
    assert out[shows[4].id]["text"][0].startswith("Text Faithfulness: 3.50")
    assert out[shows[5].id]["text"] == ["a sharper cat"]


def test_critique_image_na_score_is_nan_on_its_socket_and_left_out_of_the_overall(comfy_server, models_dir):
    seed = comfy_server.fresh_seed()
    prompt = f"a quiet lake at dawn, take {seed}"
    g = Graph()
    critic = replay(g, loader(g, models_dir), [{"answer": pointwise_answer(4, 2.5, "N/A"),
                                                "when_request_contains": prompt}])
    img = g.node("EmptyImage", width=64, height=64, batch_size=1, color=seed % 0xFFFFFF)
    crit = g.node("RR_CritiqueImage", critic=critic, image=img, prompt=prompt, weights="equal",
                  max_new_tokens=400, temperature=0.0, seed=0)
    shows = [g.node("PreviewAny", source=crit.out(i)) for i in range(4)]
    out = outputs(comfy_server.run(g, timeout=180))
    tf, pq, tr, total = (floats(out, s) for s in shows)
    assert (tf, pq) == ([4.0], [2.5]) and math.isnan(tr[0])
    assert total == [pytest.approx(overall(4, 2.5))]


def test_critique_edit_float_outputs_and_the_weights_option(comfy_server, models_dir):
    """Four dimension sockets in the Edit order, and the same critique's overall under both weight presets:
    ``rl_edit`` leaves Image Faithfulness out, ``equal`` counts it."""
    seed = comfy_server.fresh_seed()
    instruction = f"make the sky purple, take {seed}"
    g = Graph()
    critic = replay(g, loader(g, models_dir), [{"answer": pointwise_answer(3.5, 2, "3", if_=1.5),
                                                "when_request_contains": instruction, "task": "edit"}])
    src = g.node("EmptyImage", width=64, height=64, batch_size=1, color=seed % 0xFFFFFF)
    edited = g.node("EmptyImage", width=64, height=64, batch_size=2, color=(seed + 99) % 0xFFFFFF)
    by_weights = {}
    for weights in ("equal", "rl_edit"):
        crit = g.node("RR_CritiqueEdit", critic=critic, source=src, edited=edited, instruction=instruction,
                      weights=weights, max_new_tokens=400, temperature=0.0, seed=0)
        by_weights[weights] = [g.node("PreviewAny", source=crit.out(i)) for i in range(5)]
    out = outputs(comfy_server.run(g, timeout=180))
    for weights, shows in by_weights.items():
        tf, if_, pq, tr, total = (floats(out, s) for s in shows)
        assert (tf, if_, pq, tr) == ([3.5] * 2, [1.5] * 2, [2.0] * 2, [3.0] * 2), weights   # one per edited image
        expected = overall(3.5, 1.5, 2, 3) if weights == "equal" else overall(3.5, 2, 3)
        assert total == [pytest.approx(expected)] * 2, weights
    assert floats(out, by_weights["equal"][4])[0] != pytest.approx(floats(out, by_weights["rl_edit"][4])[0])


def test_critique_image_batch_floats_follow_the_image_order(comfy_server, models_dir):
    """A batch gives one FLOAT per image, in batch order: scripted by the pixels the critic received."""
    seed = comfy_server.fresh_seed()
    colors = distinct_colors(seed, 3)
    scores = {rgb(colors[0]): (2, 3), rgb(colors[1]): (4, 1.5), rgb(colors[2]): (1, 2.5)}

    def answer(body: dict) -> str:
        tf, pq = scores[sent_images(body)[-1].getpixel((0, 0))]
        return pointwise_answer(tf, pq, "N/A")

    with FakeOpenAI(models=(SERVED,), answer=answer) as peer:
        g = Graph()
        critic = server_critic(g, peer.url)
        batch = image_batch(g, colors)
        crit = g.node("RR_CritiqueImage", critic=critic, image=batch, prompt=f"a red cat {seed}", weights="equal",
                      max_new_tokens=256, temperature=0.0, seed=seed % 2**32)
        shows = [g.node("PreviewAny", source=crit.out(i)) for i in (0, 1, 3)]
        out = outputs(comfy_server.run(g, timeout=120))
    tf, pq, total = (floats(out, s) for s in shows)
    expected = [scores[rgb(c)] for c in colors]
    assert tf == [float(t) for t, _ in expected] and pq == [float(p) for _, p in expected]
    assert total == [pytest.approx(overall(t, p)) for t, p in expected]


# -- Compare: the winner image ----------------------------------------------------------------------------

@pytest.mark.parametrize("case", ["B", "A", "tie"])
def test_compare_winner_image_is_the_winning_images_pixels(comfy_server, models_dir, case):
    seed = comfy_server.fresh_seed()
    prompt = f"a red fox in snow, case {case}, take {seed}"
    rows = {"B": [(2, 4, "Image B"), (3, 3, "tie"), ("N/A", "N/A", "tie")],        # A 7.5 vs B 9.5
            "A": [(4, 2, "Image A"), (3, 2.5, "Image A"), (3, 3, "tie")],          # A 10 vs B 7.5
            "tie": [(3, 2, "Image A"), (2, 3, "Image B"), ("N/A", "N/A", "tie")]}[case]
    g = Graph()
    critic = replay(g, loader(g, models_dir), [{"answer": pairwise_answer(rows), "mode": "pairwise",
                                                "when_request_contains": prompt}])
    color_a, color_b = distinct_colors(seed, 2)
    a = g.node("EmptyImage", width=64, height=64, batch_size=1, color=color_a)
    b = g.node("EmptyImage", width=48, height=64, batch_size=1, color=color_b)
    cmp = g.node("RR_Compare", critic=critic, image_a=a, image_b=b, prompt=prompt, max_new_tokens=400,
                 temperature=0.0, seed=0)
    winner = g.node("PreviewAny", source=cmp.out(0))
    winner_image = g.node("PreviewImage", images=cmp.out(1))
    totals = [g.node("PreviewAny", source=cmp.out(i)) for i in (2, 3)]
    entry = comfy_server.run(g, timeout=180)
    out = outputs(entry)
    assert out[winner.id]["text"] == [case]
    expected_a, expected_b = {"B": (7.5, 9.5), "A": (10.0, 7.5), "tie": (7.5, 7.5)}[case]
    assert floats(out, totals[0]) == [expected_a] and floats(out, totals[1]) == [expected_b]
    [ref] = images(entry, winner_image.id)
    picture = comfy_server.fetch_image(ref).convert("RGB")
    expected = rgb(color_b) if case == "B" else rgb(color_a)     # a tie returns A, as documented
    assert picture.getpixel((0, 0)) == expected
    assert picture.size == ((48, 64) if case == "B" else (64, 64))


# -- Rank: the sorted batch -------------------------------------------------------------------------------

def server_critic(g: Graph, url: str):
    return g.node("RR_ServerCritic", base_url=url, model=SERVED, api_key_env="", max_concurrency=2, timeout_s=30,
                  retries=0, sleep_between_runs=False, max_pixels=0)


def image_batch(g: Graph, colors: list[int]):
    batch = g.node("EmptyImage", width=64, height=64, batch_size=1, color=colors[0])
    for c in colors[1:]:
        batch = g.node("ImageBatch", image1=batch, image2=g.node("EmptyImage", width=64, height=64, batch_size=1,
                                                                    color=c))
    return batch


def test_rank_sorts_the_batch_pixels_by_distinct_scores(comfy_server):
    """Four candidates with distinct scripted scores (by the pixels the critic received); the ranked batch,
    the best image and its index are read back from the sockets, not from the card."""
    seed = comfy_server.fresh_seed()
    colors = distinct_colors(seed, 4)
    # input order 0..3 scores 2.0, 3.5, 1.5, 3.0 -> ranked 1, 3, 0, 2 (neither input order nor its reverse)
    by_pixel = {rgb(c): s for c, s in zip(colors, (2.0, 3.5, 1.5, 3.0))}

    def answer(body: dict) -> str:
        s = by_pixel[sent_images(body)[-1].getpixel((0, 0))]
        return pointwise_answer(s, s, "N/A")

    with FakeOpenAI(models=(SERVED,), answer=answer) as peer:
        g = Graph()
        rank = g.node("RR_Rank", critic=server_critic(g, peer.url), images=image_batch(g, colors),
                      prompt=f"a red cat {seed}", weights="equal", max_new_tokens=256, temperature=0.0,
                      seed=seed % 2**32)
        ranked = g.node("PreviewImage", images=rank.out(0))
        best = g.node("PreviewImage", images=rank.out(1))
        best_index = g.node("PreviewAny", source=rank.out(2))
        table = g.node("PreviewAny", source=rank.out(4))
        entry = comfy_server.run(g, timeout=120)
        assert len(peer.chat_requests()) == 4
    order = [1, 3, 0, 2]
    assert pixels(comfy_server, entry, ranked) == [rgb(colors[i]) for i in order]
    assert pixels(comfy_server, entry, best) == [rgb(colors[1])]
    assert outputs(entry)[best_index.id]["text"] == ["1"]
    rows = json.loads(outputs(entry)[table.id]["text"][0])
    assert [r["index"] for r in rows] == order
    assert [r["overall"] for r in rows] == [pytest.approx(overall(s, s)) for s in (3.5, 3.0, 2.0, 1.5)]
