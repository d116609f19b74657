"""Connect to Critic Server (RR_ServerCritic) inside the real ComfyUI server, against the scripted
OpenAI-compatible fake peer (tests/fixtures/fake_openai.py) running in this pytest process."""
from __future__ import annotations

import base64
import io
import json
import os
import socket
import uuid

import pytest
from PIL import Image

from rationalrewards.backends.openai_server import OpenAIServerBackend
from tests.comfy_server import Graph, execution_error, images, outputs
from tests.fixtures.fake_openai import FakeOpenAI, Reply
from tests.unit.rr_sample_answers import T2I_FULL, T2I_FULL_SCORES

pytestmark = pytest.mark.integration

# The ComfyUI server reads the key from the environment it inherits from this pytest process when the
# session fixture starts it, which is after collection: setting the variable at import time is enough.
# The tests check that the peer received it, so a key that did not arrive fails them, never passes them.
KEY_ENV = "RR_TEST_CRITIC_SERVER_KEY"
KEY = os.environ.setdefault(KEY_ENV, f"sk-rr-{uuid.uuid4().hex}")
MODEL = "rr-critic-t2i"


def connect(g: Graph, peer_url: str, **kw):
    inputs = dict(base_url=peer_url, model=MODEL, api_key_env=KEY_ENV, max_concurrency=2, timeout_s=30, retries=1,
                  sleep_between_runs=False, max_pixels=0)
    return g.node("RR_ServerCritic", **(inputs | kw))


def critique(g: Graph, critic, image, prompt: str, seed: int):
    return g.node("RR_CritiqueImage", critic=critic, image=image, prompt=prompt, weights="equal",
                  max_new_tokens=256, temperature=0.0, seed=seed)


def rgb(color: int) -> tuple[int, int, int]:
    return (color >> 16) & 0xFF, (color >> 8) & 0xFF, color & 0xFF


def sent_image(body: dict) -> Image.Image:
    url = next(p["image_url"]["url"] for p in body["messages"][-1]["content"] if p["type"] == "image_url")
    return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB")


def test_scores_from_the_server_reach_history_and_the_key_stays_out_of_everything(comfy_server, models_dir):
    seed = comfy_server.fresh_seed()
    color = seed % 0xFFFFFF
    with FakeOpenAI(models=(MODEL,), answer=T2I_FULL) as peer:
        g = Graph()
        critic = connect(g, peer.url)
        img = g.node("EmptyImage", width=64, height=64, batch_size=2, color=color)
        crit = critique(g, critic, img, f"a red cat holding a HELLO sign, take {seed}", seed)
        save = g.node("SaveImage", images=img, filename_prefix=f"rr_server_critic_{seed}")
        entry = comfy_server.run(g, timeout=60)
        info = comfy_server.object_info()

    # the critiques came from the server and were parsed
    shown = outputs(entry)[crit.id]["rr_critiques"]
    assert len(shown) == 2
    for c in shown:
        assert {d["key"]: d["score"] for d in c["dimensions"]} == T2I_FULL_SCORES
        assert c["overall"] == pytest.approx((sum(T2I_FULL_SCORES.values()) / 3 - 1) / 3)
        assert c["refined_request"].startswith("A red cat with anatomically correct paws")
    chats = peer.chat_requests()
    assert len(chats) == 2 and peer.calls()[0] == "GET /v1/models"   # the node checked the model on connect
    for r in chats:
        assert r.headers["Authorization"] == f"Bearer {KEY}"   # the key did arrive, from the variable
        assert r.body["model"] == MODEL and r.body["temperature"] == 0.0 and r.body["max_tokens"] == 256
        sent = sent_image(r.body)
        assert sent.size == (64, 64) and sent.getpixel((10, 10)) == rgb(color)

    # ... and the key is nowhere ComfyUI writes inputs: /object_info, the queued workflow in /history,
    # the PNG metadata of the saved image, the server log
    assert KEY not in json.dumps(info)
    spec = info["RR_ServerCritic"]["input"]["required"]
    assert set(spec) == {"base_url", "model", "api_key_env", "max_concurrency", "timeout_s", "retries",
                         "sleep_between_runs", "max_pixels"}
    assert all(s[1].get("tooltip") for s in spec.values())
    assert spec["api_key_env"][1]["default"] == "" and "saves every input" in spec["api_key_env"][1]["tooltip"]
    assert entry["prompt"][2][critic.id]["inputs"]["api_key_env"] == KEY_ENV
    assert KEY not in json.dumps(entry)
    refs = images(entry, save.id)
    assert len(refs) == 2
    for ref in refs:
        png = Image.open(models_dir.output_dir / ref.get("subfolder", "") / ref["filename"])
        assert "prompt" in png.text and KEY_ENV in png.text["prompt"]
        assert all(KEY not in value for value in png.text.values())
    assert KEY not in comfy_server.log_tail(2000)


def test_replayed_answers_and_sleep_mode_go_through_the_server(comfy_server):
    seed = comfy_server.fresh_seed()
    with FakeOpenAI(models=(MODEL,), answer="the server's own answer, replaced") as peer:
        g = Graph()
        critic = connect(g, peer.url, sleep_between_runs=True)
        replay = g.node("RR_ReplayAnswers", critic=critic, script=json.dumps([{"answer": T2I_FULL}]))
        img = g.node("EmptyImage", width=32, height=32, batch_size=1, color=seed % 0xFFFFFF)
        crit = critique(g, replay, img, f"a red cat {seed}", seed)
        entry = comfy_server.run(g, timeout=60)
    [c] = outputs(entry)[crit.id]["rr_critiques"]
    assert {d["key"]: d["score"] for d in c["dimensions"]} == T2I_FULL_SCORES
    # connect: check the model, put the server to sleep; critique: wake, one cheap request, sleep again
    assert peer.calls() == ["GET /v1/models", "POST /sleep", "POST /wake_up", "POST /v1/chat/completions",
                            "POST /sleep"]
    assert peer.chat_requests()[0].body["max_tokens"] == 1 and peer.sleeping


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("case", ["wrong_model", "unset_key", "server_down", "engine_dead"])
def test_server_errors_name_the_node_and_the_fix(comfy_server, case):
    seed = comfy_server.fresh_seed()
    with FakeOpenAI(models=("served-a", "served-b", MODEL)) as peer:
        if case == "wrong_model":
            peer.models = ["served-a", "served-b"]
        if case == "engine_dead":   # connects fine, then every critique request fails (no retries left)
            peer.script = [Reply(503, {"error": {"message": "engine is dead"}})] * 2
        url = f"http://127.0.0.1:{_free_port()}/v1" if case == "server_down" else peer.url
        g = Graph()
        critic = connect(g, url, api_key_env="RR_TEST_UNSET_CRITIC_KEY" if case == "unset_key" else KEY_ENV,
                         timeout_s=5 + seed % 7, retries=1 if case == "engine_dead" else 0)  # varied: no cache hit
        img = g.node("EmptyImage", width=32, height=32, batch_size=1, color=seed % 0xFFFFFF)
        crit = critique(g, critic, img, "a red cat", seed)
        entry = comfy_server.run(g, timeout=60, check=False)
    err = execution_error(entry)
    assert err is not None
    msg = err["exception_message"]
    expected = {"wrong_model": f"does not serve a model named '{MODEL}'; it serves: served-a, served-b",
                "unset_key": "RR_TEST_UNSET_CRITIC_KEY, which is not set",
                "server_down": f"cannot reach the critic server at {url}/models (connection refused)",
                "engine_dead": "answered HTTP 503: engine is dead (tried 2 times)"}[case]
    assert expected in msg
    if case == "engine_dead":
        assert err["node_id"] == crit.id and msg.startswith("Critique Image:")
    else:
        assert err["node_id"] == critic.id and msg.startswith("Connect to Critic Server:")
    assert KEY not in json.dumps(entry)
    assert comfy_server.server.alive()


@pytest.mark.parametrize("node", ["RR_CritiqueImage", "RR_CritiqueEdit"])
def test_the_chat_body_the_server_receives_is_the_rendered_template(comfy_server, node):
    """What a Critique node inside ComfyUI sends: the template rendered with the node's prompt, the images
    in their places, pixel for pixel (tests/sent.py; the same check runs on the in-process model input)."""
    from rationalrewards.critic.critic import Critic, Item
    from rationalrewards.judging.rubric import Task
    from tests.sent import assert_prompt_sent, from_chat_body

    seed = comfy_server.fresh_seed()
    prompt = f'a red cat holding a sign that says "HELLO", (detailed fur:1.2) <lora:cat:0.7>, take {seed}'
    color, source_color = seed % 0xFFFFFF, (seed * 7 + 3) % 0xFFFFFF
    with FakeOpenAI(models=(MODEL,), answer=T2I_FULL) as peer:
        g = Graph()
        critic = connect(g, peer.url)
        img = g.node("EmptyImage", width=64, height=48, batch_size=1, color=color)
        if node == "RR_CritiqueImage":
            critique(g, critic, img, prompt, seed)
        else:
            src = g.node("EmptyImage", width=48, height=64, batch_size=1, color=source_color)
            g.node(node, critic=critic, source=src, edited=img, instruction=prompt, weights="equal",
                   max_new_tokens=256, temperature=0.0, seed=seed)
        comfy_server.run(g, timeout=60)
        [request] = peer.chat_requests()
    edited = Image.new("RGB", (64, 48), rgb(color))
    item = (Item(Task.T2I, "pointwise", prompt, (edited,)) if node == "RR_CritiqueImage" else
            Item(Task.EDIT, "pointwise", prompt, (Image.new("RGB", (48, 64), rgb(source_color)), edited)))
    assert_prompt_sent(from_chat_body(request.body), Critic(backend=OpenAIServerBackend("http://127.0.0.1:9", "critic")).build(item), prompt)
