"""The native critic in a real ComfyUI server with its own Qwen3-VL (RR_COMFYUI_TREE; run on 0.33.0): one file
in models/text_encoders/ drives a critique, a compare and a refine loop; Cancel stops it mid-answer; ComfyUI
loads it as one of its models.

The server learns the tiny size from a test-only custom node (``rr_test_tiny_size``) that calls
``tests/fixtures/native_tiny.register_tiny_size`` at start-up: nothing of it is part of the pack.
"""
from __future__ import annotations

import itertools
import json
import sys

import pytest

from rationalrewards.toolkit.export import export
from tests.comfy_server import ComfyClient, ComfyServer, Graph, REPO_ROOT, interrupted, outputs, prepare_base_dir
from tests.fixtures.native_tiny import tree
from tests.twins import pairwise_answer, pointwise_answer

FILE = "RationalRewards-tiny_bf16.safetensors"
HELPER = f'''"""Test only: teaches this server's Qwen3-VL the tiny size (tests/fixtures/native_tiny.py, imported from
its folder: the server has a ``tests`` package of its own that would shadow the checkout's)."""
import sys

sys.path.insert(0, {str(REPO_ROOT / "tests" / "fixtures")!r})
try:
    import native_tiny
finally:
    sys.path.pop(0)
native_tiny.register_tiny_size()
NODE_CLASS_MAPPINGS = {{}}
'''
colors = itertools.count(0x102030, 7919)


@pytest.fixture(scope="module")
def server(comfy_tree, native_folder, tmp_path_factory):
    base = prepare_base_dir(tmp_path_factory.mktemp("comfy-newer"))
    export(native_folder, base / "models" / "text_encoders" / FILE, "bf16")
    helper = base / "custom_nodes" / "rr_test_tiny_size"
    helper.mkdir()
    (helper / "__init__.py").write_text(HELPER, encoding="utf-8")
    proc = ComfyServer(base, base / "server.log", comfy=tree(), python=sys.executable)
    try:
        proc.start(timeout=240)
        yield ComfyClient(proc.url, server=proc)
    finally:
        proc.stop()


def loader(g: Graph, script: list[dict] | None = None):
    critic = g.node("RR_LoadNativeCritic", text_encoder=FILE, max_pixels=-1)
    return g.node("RR_ReplayAnswers", critic=critic, script=json.dumps(script)) if script else critic


def image(g: Graph, **kw):
    return g.node("EmptyImage", width=64, height=64, batch_size=kw.pop("batch_size", 1), color=kw.pop("color", next(colors)))


def test_the_server_lists_the_file_and_runs_the_pack(server):
    info = server.object_info("RR_LoadNativeCritic")["RR_LoadNativeCritic"]
    assert FILE in info["input"]["required"]["text_encoder"][1]["options"]
    assert server.server.custom_node_import_error() is None


def test_a_critique_through_comfyuis_own_qwen3vl(server):
    answer = pointwise_answer(3.5, 2.5, 2, refined="a red cat holding a sign that reads HELLO")
    g = Graph()
    critic = loader(g, [{"answer": answer, "when_request_contains": "HELLO"}])
    crit = g.node("RR_CritiqueImage", critic=critic, image=image(g, batch_size=2), prompt="a red cat holding a HELLO sign",
                  weights="equal", max_new_tokens=200, temperature=0.0, seed=0)
    cards = outputs(server.run(g, timeout=600))[crit.id]["rr_critiques"]
    assert len(cards) == 2                                                  # a batch, one answer per image
    for card in cards:
        assert {d["key"]: d["score"] for d in card["dimensions"]} == {
            "text_faithfulness": 3.5, "physical_quality": 2.5, "text_rendering": 2.0}
        assert card["template"] == "t2i_pointwise"
    log = server.server.log_path.read_text(encoding="utf-8", errors="replace")
    assert "Requested to load Qwen3VLTEModel_" in log                     # a model ComfyUI's manager loads
    g = Graph()
    free = g.node("RR_CritiqueImage", critic=loader(g), image=image(g), prompt="a dog", weights="equal",
                  max_new_tokens=16, temperature=0.0, seed=0)
    [gibberish] = outputs(server.run(g, timeout=300))[free.id]["rr_critiques"]   # random weights: nothing invented
    assert all(d["score"] is None for d in gibberish["dimensions"])


def test_a_compare_through_comfyuis_own_qwen3vl(server):
    g = Graph()
    answer = pairwise_answer([(3, 2, "Image A"), (3.5, 2, "Image A"), ("N/A", "N/A", "tie")])
    critic = loader(g, [{"answer": answer, "mode": "pairwise"}])
    cmp = g.node("RR_Compare", critic=critic, image_a=image(g), image_b=image(g), prompt="a fox", decision="published",
                 max_new_tokens=160, temperature=0.0, seed=0)
    winner = g.node("PreviewAny", source=cmp.out(0))
    out = outputs(server.run(g, timeout=300))
    assert out[winner.id]["text"] == ["A"]


def test_a_refine_loop_through_comfyuis_own_qwen3vl(server):
    refined = "a red fox in deep snow at sunrise"
    short = ("# Detailed Judgement\n1. Text Faithfulness:\n## Score: {}\n2. Physical and Visual Quality:\n## Score: {}\n"
             "3. Text Rendering:\n## Score: N/A\n# User Request Refinement:\n## Refined Request: " + refined)
    script = [{"answer": short.format(1.5, 2), "when_request_contains": "a fox"},
              {"answer": short.format(3.5, 3.5), "when_request_contains": "sunrise"}]
    g = Graph()
    critic = loader(g, script)
    start = g.node("RR_RefineLoopStart", prompt="a fox", seed=next(colors))
    img = g.node("EmptyImage", width=64, height=64, batch_size=1, color=start.out(2))
    crit = g.node("RR_CritiqueImage", critic=critic, image=img, prompt=start.out(1), weights="equal",
                  max_new_tokens=120, temperature=0.0, seed=0)
    g.node("RR_RefineLoopEnd", loop=start.out(0), image=img, critique_data=crit.out(6), max_rounds=3,
           stop_dimensions="text_faithfulness, physical_quality", threshold=3.0, stop_when_no_improvement=True,
           seed_policy="increment", mode="refined", keep="", weights="equal")
    entry = server.run(g, timeout=600)
    hist = max((v["rr_loop"][0] for v in outputs(entry).values() if "rr_loop" in v), key=lambda h: len(h["rounds"]))
    assert [r["prompt"] for r in hist["rounds"]] == ["a fox", refined]
    assert [r["good"] for r in hist["rounds"]] == [False, True] and hist["best"] == 1


def decoding(message: dict, node: str) -> bool:
    """A progress report of ``node`` past zero: ``progress`` (every ComfyUI) or ``progress_state`` (newer ones)."""
    data = message.get("data") or {}
    if message["type"] == "progress":
        return data.get("node") == node and data.get("value", 0) > 0
    if message["type"] == "progress_state":
        return (data.get("nodes") or {}).get(node, {}).get("value", 0) > 0
    return False


def test_cancel_stops_the_native_critic_mid_answer(server):
    budget = 4096
    g = Graph()
    # headers keep the node's bar moving (0.33 drops progress updates that come too close together)
    critic = loader(g, [{"answer": "## Justification: the red cat is good and the blue dog is bad.\n" * 1000}])
    crit = g.node("RR_CritiqueImage", critic=critic, image=image(g), prompt="a red cat", weights="equal",
                  max_new_tokens=budget, temperature=0.0, seed=0)
    with server.events() as ev:
        prompt_id = server.queue(g)
        ev.wait(lambda m: decoding(m, crit.id), timeout=300, what="the critique's first decoding step")
        server.interrupt()
        ev.wait(lambda m: m["type"] == "execution_interrupted" and m["data"].get("prompt_id") == prompt_id,
                timeout=300, what="the interruption")
    entry = server.wait(prompt_id, timeout=120)
    assert interrupted(entry), entry["status"]
    g2 = Graph()
    short = "# Detailed Judgement\n1. Text Faithfulness:\n## Justification: fine\n## Score: 2.5"
    crit2 = g2.node("RR_CritiqueImage", critic=loader(g2, [{"answer": short}]), image=image(g2), prompt="a cat",
                    weights="equal", max_new_tokens=64, temperature=0.0, seed=0)
    [card] = outputs(server.run(g2, timeout=300))[crit2.id]["rr_critiques"]   # the next prompt runs normally
    assert card["dimensions"][0]["score"] == 2.5
