"""ComfyUI's interrupt stops a long critique mid-generation; the critic's memory is released and the
next queued prompt runs normally."""
from __future__ import annotations

import json
import time

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


def wait_for(path, text: str, start: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(path, "rb") as fh:
            fh.seek(start)
            if text in fh.read().decode("utf-8", "replace"):
                return
        time.sleep(0.05)
    raise TimeoutError(f"{text!r} not logged within {timeout}s")


def test_interrupt_stops_a_long_critique_and_the_next_prompt_runs(comfy_server, models_dir):
    log = comfy_server.server.log_path
    start = log.stat().st_size
    g, crit = graph(models_dir, LONG_ANSWER, max_new_tokens=8192, seed=comfy_server.fresh_seed())
    prompt_id = comfy_server.queue(g)
    wait_for(log, "RationalRewards critic on", start, timeout=180)   # loaded: decoding starts now
    time.sleep(1.0)
    t0 = time.monotonic()
    comfy_server.interrupt()
    entry = comfy_server.wait(prompt_id, timeout=60)
    stopped_after = time.monotonic() - t0
    assert interrupted(entry), entry["status"]
    assert stopped_after < 10, f"interrupt took {stopped_after:.1f}s to stop the critique"
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
