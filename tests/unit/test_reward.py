"""rationalrewards.toolkit.reward: the RL reward, called the way flow_grpo, DiffusionNFT and Flow-Factory call it."""
from __future__ import annotations

import importlib
import math
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from rationalrewards.backends.base import GenerationOptions
from rationalrewards.toolkit.reward import RationalReward, flow_grpo_edit_reward, flow_grpo_reward, to_pil_images
from rationalrewards.critic.images import to_uint8
from rationalrewards.critic.script import AnswerScript, Rule
from tests.fixtures.fake_openai import FakeOpenAI
from tests.unit.toolkit_answers import pointwise_answer, tag_of

ROOT = Path(__file__).resolve().parents[2]
OPTS = GenerationOptions(max_new_tokens=16, temperature=0.0)
GARBAGE = {3}                    # item-3 answers something unparseable


def scores_for(n: int) -> dict:
    return {"text_faithfulness": 1 + (n % 4), "physical_quality": 4 - (n % 3),
            "image_faithfulness": 2.0, "text_rendering": "N/A"}


def expected(n: int, edit: bool = False) -> float:
    s = scores_for(n)
    return ((s["text_faithfulness"] + s["physical_quality"]) / 2 - 1) / 3   # rl_edit leaves Image Faithfulness out


def answer(body: dict) -> str:
    n = tag_of(body)
    if n in GARBAGE:
        return "I cannot judge this."
    images = sum(1 for p in body["messages"][-1]["content"] if p.get("type") == "image_url")
    task = "edit" if images == 2 else "t2i"
    return pointwise_answer(scores_for(n), task)


@pytest.fixture
def peer():
    with FakeOpenAI(answer=answer, delay=0.01) as p:
        yield p


def batch(n: int) -> torch.Tensor:
    """An NCHW float batch in [0, 1], as a trainer's VAE decode gives it."""
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, 3, 32, 32, generator=g)


def test_images_from_what_trainers_hold():
    t = batch(2)
    pils = to_pil_images(t)
    assert len(pils) == 2 and pils[0].size == (32, 32)
    assert np.array_equal(np.asarray(pils[0]), to_uint8(t[0].permute(1, 2, 0)))     # the pack's one rounding
    assert np.array_equal(np.asarray(to_pil_images(t.permute(0, 2, 3, 1).numpy())[1]), np.asarray(pils[1]))
    assert to_pil_images([t[0], pils[1]])[1] is pils[1]
    with pytest.raises(ValueError, match="shape"):
        to_pil_images(torch.zeros(2, 3))


def test_reward_matches_scripted_scores_and_masks_unreadable(peer):
    prompts = [f"a cat item-{i}" for i in range(5)]
    reward = RationalReward(servers=peer.url, model="critic", options=OPTS, retries=0)
    r = reward(batch(5), prompts)
    for i in range(5):
        if i in GARBAGE:
            assert r.overall[i] == 0.0 and r.unreadable[i]        # zero rule, and the mask says so
        else:
            assert math.isclose(r.overall[i], expected(i)) and not r.unreadable[i]
            assert r.scores["text_faithfulness"][i] == scores_for(i)["text_faithfulness"]
            assert r.states["text_rendering"][i] == "n/a" and math.isnan(r.scores["text_rendering"][i])
    nan_rule = RationalReward(servers=peer.url, model="critic", options=OPTS, on_unreadable="nan")
    assert math.isnan(nan_rule(batch(5), prompts).overall[3])
    with pytest.raises(ValueError, match="unknown"):
        RationalReward(servers=peer.url, model="critic", on_unreadable="skip")


def test_flow_grpo_shape_from_a_thread_pool_over_two_servers():
    with FakeOpenAI(answer=answer, delay=0.03) as a, FakeOpenAI(answer=answer, delay=0.03) as b:
        reward = RationalReward(servers=[a.url, b.url], model="critic", options=OPTS, max_concurrency=3)
        fn = flow_grpo_reward(reward)
        calls = [(batch(4), [f"p item-{100 + 10 * k + i}" for i in range(4)], [{}] * 4) for k in range(4)]
        with ThreadPoolExecutor(max_workers=4) as ex:          # how flow_grpo calls its reward
            futures = [ex.submit(fn, *c) for c in calls]
            results = [f.result() for f in futures]
        assert a.max_in_flight + b.max_in_flight <= 3 and a.chat_requests() and b.chat_requests()
    for k, (scores, info) in enumerate(results):
        assert set(scores) == {"avg", "text_faithfulness", "physical_quality", "text_rendering"}
        np.testing.assert_allclose(scores["avg"], [expected(100 + 10 * k + i) for i in range(4)], rtol=1e-6)
        assert scores["avg"].dtype == np.float32 and not info["unreadable"].any()
        assert np.all((scores["text_faithfulness"] >= 0) & (scores["text_faithfulness"] <= 1))
        assert info["refined_prompts"] == ["a better prompt"] * 4


def test_edit_reward_with_ref_images(peer):
    reward = RationalReward(servers=peer.url, model="critic", task="edit", options=OPTS)
    fn = flow_grpo_edit_reward(reward)
    scores, info = fn(batch(2), batch(2), ["make it red item-0", "make it red item-1"], [{}, {}])
    np.testing.assert_allclose(scores["avg"], [expected(0), expected(1)], rtol=1e-6)   # rl_edit weights
    body = peer.chat_requests()[-1].body
    assert sum(1 for p in body["messages"][-1]["content"] if p["type"] == "image_url") == 2
    with pytest.raises(ValueError, match="source"):
        reward(batch(1), "x item-0")


def test_a_request_that_times_out_is_masked_not_fatal():
    import threading
    from tests.fixtures.fake_openai import Reply, completion
    never = threading.Event()       # item-1's reply is held until the client has given up on it
    with FakeOpenAI(answer=answer) as peer:
        peer.script = [lambda body: Reply(body=completion(answer(body)), hold=never if tag_of(body) == 1 else None)
                       for _ in range(2)]
        reward = RationalReward(servers=peer.url, model="critic", options=OPTS, timeout_s=5, max_concurrency=2)
        r = reward(batch(2), ["item-0", "item-1"])
        never.set()
    assert not r.unreadable[0] and r.unreadable[1] and r.overall[1] == 0.0
    assert "ServerTimeout" in r.errors[1] and r.critiques[1] is None


def test_reward_on_the_in_process_critic(qwen3_critic):
    script = AnswerScript(tuple(Rule(pointwise_answer(scores_for(i)), when_request_contains=f"item-{i}")
                                for i in range(2)))
    reward = RationalReward(qwen3_critic.with_script(script), options=GenerationOptions(max_new_tokens=300,
                                                                                        temperature=0))
    r = reward([Image.new("RGB", (32, 32), "red")] * 2, ["item-0", "item-1"])
    assert [round(x, 6) for x in r.overall] == [round(expected(0), 6), round(expected(1), 6)]


def test_flow_factory_reward_model(peer, monkeypatch):
    # Flow-Factory is not on PyPI: a stand-in with its base classes' signatures (tests/fixtures/flow_factory_standin)
    monkeypatch.syspath_prepend(str(ROOT / "tests" / "fixtures" / "flow_factory_standin"))
    for name in [m for m in sys.modules if m.startswith(("flow_factory", "rationalrewards.toolkit.flow_factory"))]:
        monkeypatch.delitem(sys.modules, name)
    module_path, cls_name = "rationalrewards.toolkit.flow_factory.RationalRewardsT2I".rsplit(".", 1)
    cls = getattr(importlib.import_module(module_path), cls_name)     # how its registry resolves a class path
    config = SimpleNamespace(device=torch.device("cpu"), dtype=torch.float32,
                             extra_kwargs={"api_base_url": peer.url, "model": "critic", "max_tokens": 16})
    model = cls(config, SimpleNamespace(device=torch.device("cpu")))
    out = model(prompt=["item-0", "item-3"], image=to_pil_images(batch(2)))
    assert torch.allclose(out.rewards, torch.tensor([expected(0), 0.0]))
    assert out.extra_info["unreadable"] == [False, True]
    edit_cls = importlib.import_module(module_path).RationalRewardsEdit
    assert "condition_images" in edit_cls.required_fields
    edit = edit_cls(config, SimpleNamespace(device=torch.device("cpu")))
    out = edit(prompt=["item-1"], image=to_pil_images(batch(1)), condition_images=[to_pil_images(batch(1))])
    assert torch.allclose(out.rewards, torch.tensor([expected(1)]))


def test_readme_trainer_step_runs(peer):
    text = (ROOT / "docs" / "toolkit.md").read_text()
    block = re.search(r"<!-- reward-example -->\s*```python\n(.*?)```", text, re.S)
    assert block, "docs/toolkit.md has the reward example"
    env = dict(os.environ, RR_SERVER=peer.url, RR_MODEL="critic")
    # run as the reader would: a fresh interpreter with the snippet, then how many rewards it printed
    code = block.group(1) + "\nprint('REWARDS', len(rewards))\n"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    scope = {"rewards": [None] * int(done.stdout.split("REWARDS", 1)[1].split()[0])}
    assert len(scope["rewards"]) == 4 and len(peer.chat_requests()) == 4
