"""The critic under ComfyUI's real memory manager, in the real server (--cpu still runs the bookkeeping):
loaded by load_models_gpu, evicted by POST /free, reloaded for the next queued workflow with the same output;
without 'keep_loaded' its memory goes back after every critique node."""
from __future__ import annotations

import importlib.util
import json
import time

import pytest

from tests.comfy_server import WIDE_CRITIC_NAME, Graph, outputs

pytestmark = pytest.mark.integration

LOADED = "RationalRewards critic on cpu"
OFFLOADED = "RationalRewards critic offloaded"
REQUESTED = "Requested to load RationalRewardsCritic"


class Log:
    """The server log from a mark on (the session's server writes one file)."""

    def __init__(self, client):
        self.path = client.server.log_path
        self.mark()

    def mark(self) -> None:
        self.start = self.path.stat().st_size

    def since(self) -> str:
        with open(self.path, "rb") as fh:
            fh.seek(self.start)
            return fh.read().decode("utf-8", "replace")

    def wait(self, text: str, timeout: float = 30, poke=None) -> str:
        """The log since the mark once ``text`` is in it; ``poke()`` is called every 2 s meanwhile."""
        deadline = time.monotonic() + timeout
        next_poke = time.monotonic() + 2
        while text not in self.since():
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not logged within {timeout}s:\n{self.since()[-3000:]}")
            if poke is not None and time.monotonic() > next_poke:
                poke()
                next_poke = time.monotonic() + 2
            time.sleep(0.05)
        return self.since()


def critique_graph(models_dir, seed: int, keep_loaded: bool | None, script: list | None = None,
                   max_new_tokens: int = 24, checkpoint: str | None = None,
                   quantization: str | None = None) -> tuple[Graph, dict]:
    g = Graph()
    loader = dict(checkpoint=checkpoint or models_dir.critic, custom_id="", allow_download=False, dtype="auto", device="auto",
                  attention="sdpa", max_pixels=0, batch_size=1)
    if keep_loaded is not None:
        loader["keep_loaded"] = keep_loaded
    if quantization is not None:
        loader["quantization"] = quantization
    critic = g.node("RR_LoadCritic", **loader)
    if script is not None:
        critic = g.node("RR_ReplayAnswers", critic=critic, script=json.dumps(script))
    image = g.node("EmptyImage", width=64, height=64, batch_size=1, color=0x3366CC)
    crit = g.node("RR_CritiqueImage", critic=critic, image=image, prompt="a blue square", weights="equal",
                  max_new_tokens=max_new_tokens, temperature=0.0, seed=seed % 2**32)   # greedy: seed varies the graph only
    text = g.node("PreviewAny", source=crit.out(4))
    return g, {"critique": crit, "text": text}


def test_kept_critic_is_evicted_by_comfyui_and_reloaded_with_the_same_output(comfy_server, models_dir):
    log = Log(comfy_server)
    g, n = critique_graph(models_dir, comfy_server.fresh_seed(), keep_loaded=True)
    first = outputs(comfy_server.run(g, timeout=180))[n["text"].id]["text"]
    ran = log.since()
    assert REQUESTED in ran and LOADED in ran
    assert "RationalRewards memory plan (tiny-qwen3vl on cpu): needs " in ran and "available (free + evictable)" in ran
    assert OFFLOADED not in ran, "keep_loaded: the critic stays registered after the node"

    log.mark()
    comfy_server.free(unload_models=True, free_memory=False)     # ComfyUI's manager unloads every model
    # 0.3.75's worker can miss the wake-up of a /free that lands during its post-prompt gc.collect(), and then
    # sleeps until the next prompt: post the flag again until it is acted on.
    log.wait(OFFLOADED, poke=lambda: comfy_server.post("/free", json={"unload_models": True}).raise_for_status())

    log.mark()
    g2, n2 = critique_graph(models_dir, comfy_server.fresh_seed(), keep_loaded=True)
    second = outputs(comfy_server.run(g2, timeout=180))[n2["text"].id]["text"]
    again = log.since()
    assert REQUESTED in again and LOADED in again, "the evicted critic is loaded again for the next workflow"
    assert second == first and first and first[0]                 # free greedy decoding: same text


def test_default_hands_memory_back_after_each_critique(comfy_server, models_dir):
    log = Log(comfy_server)
    script = [{"answer": "# Detailed Judgement\n1. Text Faithfulness:\n## Justification: ok\n## Score: 3"}]
    for _ in range(2):
        log.mark()
        g, n = critique_graph(models_dir, comfy_server.fresh_seed(), keep_loaded=None, script=script,
                              max_new_tokens=64)
        out = outputs(comfy_server.run(g, timeout=180))
        [card] = out[n["critique"].id]["rr_critiques"]
        assert card["dimensions"][0]["score"] == 3.0
        ran = log.since()
        assert ran.index(LOADED) < ran.index(OFFLOADED), "loaded for the node, released right after it"


@pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is None, reason="bitsandbytes (the [quant] extra)")
def test_quantised_critic_is_evicted_and_reloaded_with_the_same_output(comfy_server, models_dir):
    """A critic quantised while loading (bitsandbytes int8) is a model like any other for ComfyUI's memory
    manager: evicted by /free, loaded again for the next workflow, same greedy answer."""
    log = Log(comfy_server)
    kw = dict(keep_loaded=True, checkpoint=WIDE_CRITIC_NAME, quantization="int8")
    g, n = critique_graph(models_dir, comfy_server.fresh_seed(), **kw)
    first = outputs(comfy_server.run(g, timeout=300))[n["text"].id]["text"]
    ran = log.since()
    assert "quantization: int8 (bitsandbytes" in ran and REQUESTED in ran and LOADED in ran

    log.mark()
    comfy_server.free(unload_models=True, free_memory=False)
    log.wait(OFFLOADED, poke=lambda: comfy_server.post("/free", json={"unload_models": True}).raise_for_status())

    log.mark()
    g2, n2 = critique_graph(models_dir, comfy_server.fresh_seed(), **kw)
    second = outputs(comfy_server.run(g2, timeout=300))[n2["text"].id]["text"]
    again = log.since()
    assert REQUESTED in again and LOADED in again, "the evicted quantised critic is loaded again"
    assert second == first and first and first[0]
