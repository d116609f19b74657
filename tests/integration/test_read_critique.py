"""Any VLM as the critic, in the real server (CI's ComfyUI 0.3.75; nothing here needs native Qwen3-VL):
Read Critique turns an answer text into the same critique data the pack's critic gives for that answer,
which Refine and Save take; Critic Prompt as Text writes the published prompt for core TextGenerate."""
from __future__ import annotations

import json
import math

import pytest

from tests.comfy_server import Graph, execution_error, outputs
from tests.fixtures.fake_openai import FakeOpenAI
from tests.unit.rr_sample_answers import EDIT_FULL, T2I_FULL, T2I_SCORE_FIRST

pytestmark = pytest.mark.integration
MODEL = "rr-critic"
SAMPLES = [("t2i", T2I_FULL), ("edit", EDIT_FULL), ("t2i", T2I_SCORE_FIRST), ("t2i", "I like it. Score: great")]


def comparable(entry: dict) -> dict:
    """A card entry without what only a critic run records (its template and image size)."""
    return {k: v for k, v in entry.items() if k not in ("template", "template_hash", "template_source", "image_size")}


@pytest.mark.parametrize("task,answer", SAMPLES, ids=["t2i_full", "edit_full", "t2i_score_first", "unreadable"])
def test_read_critique_gives_the_data_the_critic_gives_for_the_same_answer(comfy_server, task, answer):
    seed = comfy_server.fresh_seed()
    prompt = f"a red cat holding a HELLO sign {seed}"
    with FakeOpenAI(models=(MODEL,), answer=answer) as peer:
        g = Graph()
        critic = g.node("RR_ServerCritic", base_url=peer.url, model=MODEL, api_key_env="", max_concurrency=1,
                        timeout_s=30, retries=0, sleep_between_runs=False, max_pixels=0)
        img = g.node("EmptyImage", width=64, height=48, batch_size=1, color=seed % 0xFFFFFF)
        if task == "edit":
            src = g.node("EmptyImage", width=64, height=48, batch_size=1, color=(seed + 1) % 0xFFFFFF)
            crit = g.node("RR_CritiqueEdit", critic=critic, source=src, edited=img, instruction=prompt,
                          weights="equal", max_new_tokens=512, temperature=0.0, seed=0)
        else:
            crit = g.node("RR_CritiqueImage", critic=critic, image=img, prompt=prompt, weights="equal",
                          max_new_tokens=512, temperature=0.0, seed=0)
        read = g.node("RR_ReadCritique", text=answer, prompt=prompt, task="edit" if task == "edit" else "text-to-image",
                      weights="equal", image=img)
        refined = [g.node("RR_RefinePrompt", critique_data=node.out(n), mode="merge", keep="", pick="best")
                   for node, n in ((crit, 7 if task == "edit" else 6), (read, 7))]
        shows = [g.node("PreviewAny", source=r.out(0)) for r in refined]
        overall = g.node("PreviewAny", source=read.out(4))
        entry = comfy_server.run(g, timeout=60)
    out = outputs(entry)
    [by_critic] = out[crit.id]["rr_critiques"]
    [by_reader] = out[read.id]["rr_critiques"]
    assert comparable(by_reader) == comparable(by_critic)
    assert "template" in by_critic and "template" not in by_reader        # a read text claims no template
    assert out[shows[0].id]["text"] == out[shows[1].id]["text"]             # Refine takes either alike
    shown = out[overall.id]["text"][0]
    assert (by_critic["overall"] is None and shown == "nan") or math.isclose(float(shown), by_critic["overall"])


def test_read_critique_feeds_save_with_its_image(comfy_server, models_dir):
    seed = comfy_server.fresh_seed()
    g = Graph()
    img = g.node("EmptyImage", width=64, height=48, batch_size=1, color=seed % 0xFFFFFF)
    read = g.node("RR_ReadCritique", text=T2I_FULL, prompt=f"a red cat {seed}", task="text-to-image",
                  weights="equal", image=img)
    save = g.node("RR_SaveCritique", critique_data=read.out(7), filename_prefix=f"rr_read/{seed}",
                  embed_workflow=False)
    entry = comfy_server.run(g, timeout=60)
    [ref] = outputs(entry)[save.id]["images"]
    record = json.loads((models_dir.output_dir / ref["subfolder"] / ref["filename"]).with_suffix(".json").read_text())
    assert {d["key"]: d["score"] for d in record["dimensions"]} == {
        "text_faithfulness": 3.5, "physical_quality": 2.5, "text_rendering": 2.0}
    assert record["request"] == f"a red cat {seed}"


def test_read_critique_refuses_an_empty_text_naming_what_to_connect(comfy_server):
    g = Graph()
    g.node("RR_ReadCritique", text="  ", prompt="a cat", task="text-to-image", weights="equal")
    error = execution_error(comfy_server.run(g, timeout=30, check=False))["exception_message"]
    assert "Read Critique: the text is empty" in error and "Generate Text" in error


def test_critic_prompt_writes_the_published_chat_text_and_sized_images(comfy_server):
    seed = comfy_server.fresh_seed()
    g = Graph()
    edited = g.node("EmptyImage", width=1000, height=700, batch_size=1, color=seed % 0xFFFFFF)
    source = g.node("EmptyImage", width=1000, height=700, batch_size=1, color=0)
    t2i = g.node("RR_CriticPrompt", image=edited, prompt=f"a fox {seed}")
    edit = g.node("RR_CriticPrompt", image=edited, prompt=f"make it night {seed}", source=source)
    texts = [g.node("PreviewAny", source=n.out(0)) for n in (t2i, edit)]
    sizes = [g.node("GetImageSize", image=n.out(1)) for n in (t2i, edit)]
    shown = [g.node("PreviewAny", source=s.out(i)) for s in sizes for i in (0, 1, 2)]
    out = outputs(comfy_server.run(g, timeout=60))
    t2i_text, edit_text = (out[t.id]["text"][0] for t in texts)
    for text, pads, request in ((t2i_text, 1, f"a fox {seed}"), (edit_text, 2, f"make it night {seed}")):
        assert text.startswith("<|im_start|>system\n") and text.endswith("<|im_end|>\n<|im_start|>assistant\n")
        assert text.count("<|vision_start|><|image_pad|><|vision_end|>") == pads and request in text
    width, height, count = (int(out[s.id]["text"][0]) for s in shown[:3])
    # 1000x700 above 802,816 px: scaled to the trained size, then snapped to multiples of 32 as the processor does
    assert width % 32 == 0 and height % 32 == 0 and width * height <= 802_816 and count == 1
    assert [int(out[s.id]["text"][0]) for s in shown[3:]] == [width, height, 2]
