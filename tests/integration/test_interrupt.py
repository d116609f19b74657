"""ComfyUI's interrupt stops a long critique mid-generation; the critic's memory is released and the
next queued prompt runs normally."""
from __future__ import annotations

import json

import pytest

from tests.comfy_server import Graph, interrupted, outputs

pytestmark = pytest.mark.integration

LONG_ANSWER = "the red cat is good and the blue dog is bad. " * 2000     # far beyond 8192 tokens: no early EOS


def graph(models_dir, answer: str, max_new_tokens: int, seed: int) -> tuple[Graph, object]:
    g = Graph()
    critic = g.node("RR_LoadCritic", checkpoint=models_dir.critic, custom_id="", allow_download=False, dtype="auto",
                    device="auto", attention="sdpa", max_pixels=0, batch_size=1, keep_loaded=False)
    replay = g.node("RR_ReplayAnswers", critic=critic, script=json.dumps([{"answer": answer}]))
    image = g.node("EmptyImage", width=64, height=64, batch_size=1, color=seed % 0xFFFFFF)
    crit = g.node("RR_CritiqueImage", critic=replay, image=image, prompt="a red cat", weights="equal",
                  max_new_tokens=max_new_tokens, temperature=0.0, seed=0)
    return g, crit


def test_interrupt_stops_a_long_critique_and_the_next_prompt_runs(comfy_server, models_dir):
    """Interrupt once decoding has visibly started (a progress report of the critique node), then check by
    counts, not seconds: the critique stopped short of its token budget, and the critic's memory was
    handed back."""
    log = comfy_server.server.log_path
    start = log.stat().st_size
    budget = 8192
    g, crit = graph(models_dir, LONG_ANSWER, max_new_tokens=budget, seed=comfy_server.fresh_seed())
    with comfy_server.events() as ev:
        prompt_id = comfy_server.queue(g)
        ev.wait(lambda m: m["type"] == "progress" and m["data"]["node"] == crit.id and m["data"]["value"] > 0,
                timeout=240, what="the critique's first decoding step")
        comfy_server.interrupt()
        ev.wait(lambda m: m["type"] == "execution_interrupted" and m["data"].get("prompt_id") == prompt_id,
                timeout=240, what="the interruption")
        reached = max(p["value"] for p in ev.progress(crit.id))
    entry = comfy_server.wait(prompt_id, timeout=120)
    assert interrupted(entry), entry["status"]
    assert reached < budget, f"the critique decoded its whole budget ({reached} tokens) despite the interrupt"
    with open(log, "rb") as fh:
        fh.seek(start)
        ran = fh.read().decode("utf-8", "replace")
    assert "Processing interrupted" in ran
    assert ran.index("RationalRewards critic on") < ran.index("RationalRewards critic offloaded"), \
        "the interrupted critique still hands the critic's memory back"

    answer = "# Detailed Judgement\n1. Text Faithfulness:\n## Justification: fine\n## Score: 2.5"
    g2, crit2 = graph(models_dir, answer, max_new_tokens=64, seed=comfy_server.fresh_seed())
    out = outputs(comfy_server.run(g2, timeout=120))
    [card] = out[crit2.id]["rr_critiques"]
    assert card["dimensions"][0]["score"] == 2.5
