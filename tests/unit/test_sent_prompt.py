"""The prompt text that actually reaches the model, on both backends (tests/sent.py holds the check).

In-process: the token ids ``model.generate`` receives, decoded with the checkpoint's tokenizer.
Server: the chat body the (fake) OpenAI-compatible server receives. Either way the user turn must be the
request the critic built from its template - every text part verbatim, the images in their places - with
the user's prompt in it exactly once, for all four templates and for every row of a batch.
"""
from __future__ import annotations

import pytest
from PIL import Image

from rationalrewards.backends.base import GenerationOptions
from rationalrewards.backends.openai_server import OpenAIServerBackend
from rationalrewards.critic.critic import Critic, Item
from rationalrewards.judging.rubric import Task
from rationalrewards.critic.script import AnswerScript, Rule
from tests.fixtures.fake_openai import FakeOpenAI
from tests.sent import assert_prompt_sent, from_chat_body, record_model_inputs
from tests.unit.rr_sample_answers import T2I_FULL

OPTS = GenerationOptions(max_new_tokens=8, temperature=0)
PROMPT = 'a red cat holding a sign that says "HELLO", (detailed fur:1.2) <lora:cat:0.7>'


def pictures():
    return {"source": Image.new("RGB", (64, 48), (10, 120, 30)), "a": Image.new("RGB", (48, 64), (200, 20, 20)),
            "b": Image.new("RGB", (64, 64), (20, 20, 200))}


CASES = {   # template -> (how the critic is called, the item it builds)
    "t2i_pointwise": (lambda c, p, o: c.critique([p["a"]], PROMPT, o),
                      lambda p: Item(Task.T2I, "pointwise", PROMPT, (p["a"],))),
    "edit_pointwise": (lambda c, p, o: c.critique([p["a"]], PROMPT, o, sources=[p["source"]]),
                       lambda p: Item(Task.EDIT, "pointwise", PROMPT, (p["source"], p["a"]))),
    "t2i_pairwise": (lambda c, p, o: c.compare(p["a"], p["b"], PROMPT, o),
                     lambda p: Item(Task.T2I, "pairwise", PROMPT, (p["a"], p["b"]))),
    "edit_pairwise": (lambda c, p, o: c.compare(p["a"], p["b"], PROMPT, o, source=p["source"]),
                      lambda p: Item(Task.EDIT, "pairwise", PROMPT, (p["source"], p["a"], p["b"]))),
}


@pytest.mark.parametrize("template", CASES)
def test_in_process_model_input_is_the_rendered_template(tiny_critic, template):
    call, item = CASES[template]
    pics = pictures()
    with record_model_inputs(tiny_critic.backend) as seen:
        call(tiny_critic, pics, OPTS)
    [sent] = seen
    expected = tiny_critic.build(item(pics))
    assert_prompt_sent(sent, expected, PROMPT)
    assert len(sent.user.image_tokens) == len(expected.images) and all(n > 0 for n in sent.user.image_tokens)


def test_in_process_batch_rows_each_carry_their_own_prompt(qwen3_critic):
    """Three prompts of different lengths in one left-padded batch: each row is its own request."""
    prompts = ["a red cat", "a green dog with a long tail, a top hat and a blue sign", "static hum"]
    images = [Image.new("RGB", (64, 64), (30 * i, 90, 200)) for i in range(3)]
    scripted = qwen3_critic.with_script(AnswerScript((Rule(answer="# Summary: ok"),)))
    with record_model_inputs(qwen3_critic.backend) as seen:
        scripted.critique(images, prompts, GenerationOptions(temperature=0))
    assert len(seen) == 3
    for sent, prompt, img in zip(seen, prompts, images):
        assert_prompt_sent(sent, qwen3_critic.build(Item(Task.T2I, "pointwise", prompt, (img,))), prompt)


@pytest.mark.parametrize("template", CASES)
def test_server_chat_body_is_the_rendered_template(template):
    call, item = CASES[template]
    pics = pictures()
    with FakeOpenAI(answer=T2I_FULL) as peer:
        critic = Critic(backend=OpenAIServerBackend(peer.url, "critic", timeout_s=30, retries=0))
        call(critic, pics, OPTS)
        [request] = peer.chat_requests()
    assert_prompt_sent(from_chat_body(request.body), critic.build(item(pics)), PROMPT)


def test_the_check_turns_red_on_what_a_backend_could_get_wrong(qwen3_critic):
    """The shared assertion is not a formality: a dropped, reordered or altered part fails it."""
    pics = pictures()
    expected = qwen3_critic.build(Item(Task.T2I, "pairwise", PROMPT, (pics["a"], pics["b"])))
    with FakeOpenAI(answer=T2I_FULL) as peer:
        Critic(backend=OpenAIServerBackend(peer.url, "critic", timeout_s=30, retries=0)).compare(
            pics["a"], pics["b"], PROMPT, OPTS)
        body = peer.chat_requests()[0].body
    assert_prompt_sent(from_chat_body(body), expected, PROMPT)
    content = body["messages"][-1]["content"]
    images = [i for i, p in enumerate(content) if p["type"] == "image_url"]
    swapped = list(content)
    swapped[images[0]], swapped[images[1]] = content[images[1]], content[images[0]]       # A and B swapped
    edited = [dict(p, text=p["text"].replace("HELLO", "HELO")) if p["type"] == "text" else p for p in content]
    dropped = [p for i, p in enumerate(content) if i != images[1]]
    doubled = [dict(p, text=p["text"] + PROMPT) if p["type"] == "text" else p for p in content]
    for broken in (swapped, edited, dropped, doubled):
        bad = dict(body, messages=body["messages"][:-1] + [{"role": "user", "content": broken}])
        with pytest.raises(AssertionError):
            assert_prompt_sent(from_chat_body(bad), expected, PROMPT)
