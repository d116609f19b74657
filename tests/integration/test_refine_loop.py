"""Issue #3 end to end: the critique-refine loop around ComfyUI's own SD1.5 sampler nodes."""
from __future__ import annotations

import json

import pytest
from PIL import Image, ImageChops

from tests.comfy_server import Graph, images, interrupted, outputs
from tests.twins import add_previews, for_tests, insert_replay, load_twin, pointwise_answer

pytestmark = pytest.mark.integration

ROUND0 = "a red fox sitting in fresh snow"        # every twin prompt of the T2I loop contains this
REFINED = "a red fox sitting in deep fresh snow at sunrise, sharp focus, golden light"


def t2i_loop(comfy_server, models_dir, script, **end_inputs) -> dict:
    api = add_previews(for_tests(load_twin("t2i_refine_loop"), models_dir, comfy_server.fresh_seed(),
                                 max_new_tokens=600), {"13": ["10", 4]})   # the history as text
    api["10"]["inputs"].update(end_inputs)
    return insert_replay(api, script) if script is not None else api



def loop_history(entry: dict) -> dict:
    """The final history the last Loop End clone reported (each round's clone reports its own)."""
    reports = [v["rr_loop"][0] for v in outputs(entry).values() if "rr_loop" in v]
    return max(reports, key=lambda h: len(h["rounds"]))


def round_images(comfy_server, entry) -> list[Image.Image]:
    return [comfy_server.fetch_image(ref) for ref in images(entry, "12")]


def test_refined_prompt_reaches_the_encoder_and_the_loop_stops_on_the_rule(comfy_server, models_dir):
    script = [{"answer": pointwise_answer(2, 2.5, "[2]", refined=REFINED), "when_request_contains": ROUND0},
              {"answer": pointwise_answer(3.5, 3, "N/A", refined="unused"), "when_request_contains": "golden light"}]
    entry = comfy_server.run(t2i_loop(comfy_server, models_dir, script), timeout=300)
    hist = loop_history(entry)
    prompts = [r["prompt"] for r in hist["rounds"]]
    assert len(prompts) == 2 and ROUND0 in prompts[0]
    # merge mode: the refined request, with the user's weighted phrase and nothing else lost
    assert prompts[1].startswith(REFINED) and "(detailed fur:1.2)" in prompts[1]
    assert [r["good"] for r in hist["rounds"]] == [False, True]
    assert hist["best"] == 1 and "meets the stop rule" in hist["stop_reason"]
    assert hist["rounds"][0]["seed"] == hist["rounds"][1]["seed"]          # same seed, as published
    # both rounds really generated: same seed, different prompt -> different pixels
    first, second = round_images(comfy_server, entry)
    assert ImageChops.difference(first.convert("RGB"), second.convert("RGB")).getbbox() is not None
    out = outputs(entry)
    assert "stopped: round 1 meets the stop rule" in out["13"]["text"][0]
    assert len(images(entry, "11")) == 1


def test_round_zero_already_good_stops_after_one_critique(comfy_server, models_dir):
    script = [{"answer": pointwise_answer(4, 3.5, "3", refined=REFINED), "when_request_contains": ROUND0}]
    entry = comfy_server.run(t2i_loop(comfy_server, models_dir, script), timeout=300)
    hist = loop_history(entry)
    assert len(hist["rounds"]) == 1 and hist["best"] == 0 and "round 0 meets" in hist["stop_reason"]
    assert len(round_images(comfy_server, entry)) == 1


def test_best_round_is_returned_not_the_last_when_scores_drop(comfy_server, models_dir):
    script = [{"answer": pointwise_answer(2.5, 2.5, refined=REFINED), "when_request_contains": ROUND0},
              {"answer": pointwise_answer(2, 2, refined=REFINED + ", more"), "when_request_contains": "golden light"}]
    entry = comfy_server.run(t2i_loop(comfy_server, models_dir, script, max_rounds=4), timeout=300)
    hist = loop_history(entry)
    assert len(hist["rounds"]) == 2 and hist["best"] == 0 and "did not improve" in hist["stop_reason"]
    best_text = outputs(entry)["13"]["text"][0]
    assert "round 0: overall 0.500 seed" in best_text and best_text.splitlines()[0].endswith("<- best")


def test_unparsed_critiques_are_never_best(comfy_server, models_dir):
    entry = comfy_server.run(t2i_loop(comfy_server, models_dir, None, max_rounds=2), timeout=300)
    hist = loop_history(entry)
    assert all(r["overall"] is None and not r["good"] for r in hist["rounds"])
    assert hist["best"] is None
    assert "no round could be scored" in outputs(entry)["13"]["text"][0]


def test_edit_loop_keeps_the_source_and_refines_the_instruction(comfy_server, models_dir):
    seed = comfy_server.fresh_seed()
    source = comfy_server.upload_image(Image.new("RGB", (64, 64), (seed % 255, 90, 200)))
    api = for_tests(load_twin("edit_refine_loop"), models_dir, seed, image=source, max_new_tokens=600)
    instruction = api["3"]["inputs"]["prompt"]
    refined = "make the sky a vivid sunset orange with pink clouds, keep the buildings unchanged"
    script = [{"answer": pointwise_answer(2, 3, if_=3.5, refined=refined), "when_request_contains": instruction,
               "task": "edit"},
              {"answer": pointwise_answer(3.5, 3.5, if_=3, refined="unused"), "when_request_contains": "pink clouds",
               "task": "edit"}]
    entry = comfy_server.run(insert_replay(api, script), timeout=300)
    hist = loop_history(entry)
    assert [r["prompt"] for r in hist["rounds"]] == [instruction, refined]
    assert hist["best"] == 1 and set(hist["rounds"][1]["scores"]) >= {"image_faithfulness"}


def test_refine_prompt_node_protects_lora_tags_and_explains_missing_refinement(comfy_server, models_dir):
    g = Graph()
    critic = g.node("RR_LoadCritic", checkpoint=models_dir.critic, custom_id="", allow_download=False, dtype="auto",
                    device="auto", attention="sdpa", max_pixels=0, batch_size=4)
    seed = comfy_server.fresh_seed()
    prompt = f"a cat <lora:catStyle:0.7> ({seed % 97} whiskers:1.2)"
    replay = g.node("RR_ReplayAnswers", critic=critic,
                    script=json.dumps([{"answer": pointwise_answer(2, 2, refined="a fluffy cat, 5 whiskers")}]))
    img = g.node("EmptyImage", width=64, height=64, batch_size=1, color=seed % 0xFFFFFF)
    scripted = g.node("RR_CritiqueImage", critic=replay, image=img, prompt=prompt, weights="equal",
                      max_new_tokens=400, temperature=0.1, seed=0)
    free = g.node("RR_CritiqueImage", critic=critic, image=img, prompt=prompt, weights="equal",
                  max_new_tokens=16, temperature=0.1, seed=0)
    merged = g.node("RR_RefinePrompt", critique_data=scripted.out(6), mode="merge", keep="", pick="best")
    kept = g.node("RR_RefinePrompt", critique_data=free.out(6), mode="merge", keep="", pick="best")
    shows = [g.node("PreviewAny", source=n.out(i)) for n in (merged, kept) for i in (0, 1)]
    out = outputs(comfy_server.run(g, timeout=180))
    texts = [out[s.id]["text"][0] for s in shows]
    assert texts[0] == f"a fluffy cat, 5 whiskers, <lora:catStyle:0.7>, ({seed % 97} whiskers:1.2)"
    assert "<lora:catStyle:0.7>" in texts[1]
    assert texts[2] == prompt and "no Refined Request" in texts[3]


def test_interrupt_stops_the_loop_and_keeps_finished_rounds(comfy_server, models_dir):
    slow = pointwise_answer(2, 2, refined="x") + " filler" * 3000        # thousands of forced tokens
    script = [{"answer": pointwise_answer(2, 2, refined=REFINED + ", slow round"), "when_request_contains": ROUND0},
              {"answer": slow, "when_request_contains": "slow round"}]
    api = t2i_loop(comfy_server, models_dir, script)
    api["9"]["inputs"]["max_new_tokens"] = 8192
    with comfy_server.events() as ev:
        prompt_id = comfy_server.queue(api)
        ev.wait(lambda m: m["type"] == "executed" and "rr_loop" in (m["data"].get("output") or {}),
                timeout=240, what="round 0's Loop End report")
        # round 1 is running once its critique decodes: critique nodes are the only ones with a
        # 1000-step bar (nodes/common.py, progress by answer sections), and it leaves 0 when decoding starts
        ev.wait(lambda m: m["type"] == "progress" and m["data"]["max"] == 1000 and m["data"]["value"] > 0,
                timeout=240, what="round 1's critique decoding")
        comfy_server.interrupt()
    entry = comfy_server.wait(prompt_id, timeout=120)
    assert interrupted(entry)
    hist = loop_history(entry)
    assert len(hist["rounds"]) == 1 and ROUND0 in hist["rounds"][0]["prompt"]
    assert hist["rounds"][0]["refined_prompt"].startswith(REFINED)
    # the server runs the next prompt normally
    script_ok = [{"answer": pointwise_answer(4, 4, refined="done"), "when_request_contains": ROUND0}]
    after = comfy_server.run(t2i_loop(comfy_server, models_dir, script_ok), timeout=300)
    assert loop_history(after)["best"] == 0


def test_later_rounds_keep_the_users_negative_prompt(comfy_server, models_dir):
    """Round 1 is generated by cloned nodes; its negative conditioning must still be the user's.
    Same script and seed, two different negative prompts: if a clone dropped the negative wiring,
    the round-1 images of both runs would be identical."""
    script = [{"answer": pointwise_answer(2, 2, refined=REFINED), "when_request_contains": ROUND0},
              {"answer": pointwise_answer(3.5, 3.5, refined="unused"), "when_request_contains": "golden light"}]
    seed = comfy_server.fresh_seed()
    second_rounds = []
    for negative in ("blurry, low quality, watermark", "cartoon, oversaturated, deformed hands"):
        api = insert_replay(add_previews(for_tests(load_twin("t2i_refine_loop"), models_dir, seed, max_new_tokens=600),
                                         {"13": ["10", 4]}), script)
        api["4"]["inputs"]["text"] = negative
        entry = comfy_server.run(api, timeout=300)
        assert len(loop_history(entry)["rounds"]) == 2
        second_rounds.append(round_images(comfy_server, entry)[1].convert("RGB"))
    assert ImageChops.difference(*second_rounds).getbbox() is not None


def test_best_image_and_best_prompt_outputs_are_the_best_rounds_not_the_last(comfy_server, models_dir):
    """Three rounds scoring 0.333, 0.5, 0.417 (stop on no improvement off): the best is the middle round.
    Loop End's best_image, best_prompt and best_round sockets are read back and compared with the rounds."""
    script = [{"answer": pointwise_answer(2, 2, refined="a red fox in deep snow, take two"),
               "when_request_contains": ROUND0},
              {"answer": pointwise_answer(2.5, 2.5, refined="a red fox in deep snow at dusk, take three"),
               "when_request_contains": "take two"},
              {"answer": pointwise_answer(2.5, 2, refined="unused"), "when_request_contains": "take three"}]
    api = t2i_loop(comfy_server, models_dir, script, max_rounds=3, stop_when_no_improvement=False)
    api["90"] = {"class_type": "PreviewAny", "inputs": {"source": ["10", 1]}}     # best_prompt
    api["91"] = {"class_type": "PreviewAny", "inputs": {"source": ["10", 5]}}     # best_round
    entry = comfy_server.run(api, timeout=300)
    hist = loop_history(entry)
    assert [r["overall"] for r in hist["rounds"]] == [pytest.approx(v) for v in (1 / 3, 0.5, 5 / 12)]
    assert hist["best"] == 1 and "maximum of 3" in hist["stop_reason"]
    out = outputs(entry)
    assert out["90"]["text"] == [hist["rounds"][1]["prompt"]] and "take two" in out["90"]["text"][0]
    assert out["91"]["text"] == ["1"]
    rounds = [im.convert("RGB") for im in round_images(comfy_server, entry)]
    assert len(rounds) == 3
    [best_ref] = images(entry, "11")
    best = comfy_server.fetch_image(best_ref).convert("RGB")
    assert best.tobytes() == rounds[1].tobytes()
    assert best.tobytes() != rounds[2].tobytes() and best.tobytes() != rounds[0].tobytes()


def test_best_image_after_a_drop_is_round_zeros_pixels(comfy_server, models_dir):
    """Best = round 0, last = round 1 (the drop stops the loop): the best_image socket holds round 0."""
    script = [{"answer": pointwise_answer(2.5, 2.5, refined=REFINED), "when_request_contains": ROUND0},
              {"answer": pointwise_answer(2, 2, refined=REFINED + ", more"), "when_request_contains": "golden light"}]
    api = t2i_loop(comfy_server, models_dir, script, max_rounds=4)
    api["90"] = {"class_type": "PreviewAny", "inputs": {"source": ["10", 1]}}
    entry = comfy_server.run(api, timeout=300)
    hist = loop_history(entry)
    assert len(hist["rounds"]) == 2 and hist["best"] == 0
    first, second = (im.convert("RGB") for im in round_images(comfy_server, entry))
    [best_ref] = images(entry, "11")
    best = comfy_server.fetch_image(best_ref).convert("RGB")
    assert best.tobytes() == first.tobytes() != second.tobytes()
    assert outputs(entry)["90"]["text"] == [hist["rounds"][0]["prompt"]]
