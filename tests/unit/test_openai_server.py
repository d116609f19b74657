"""The OpenAI-compatible server backend: against a scripted fake peer (errors, retries, concurrency,
keys, cancel, vLLM sleep mode) and against a real ``transformers serve`` of the tiny critic
(greedy parity with the in-process backend)."""
from __future__ import annotations

import base64
import dataclasses
import io
import os
import re
import threading
import time

import numpy as np
import pytest
from PIL import Image

from rationalrewards.backends.base import GenerationInterrupted, GenerationOptions
from rationalrewards.backends.openai_server import (OPTIONAL_FIELDS, ApiKeyError, ModelNotServed, OpenAIServerBackend,
                                                     ServerAnswerError, ServerError, ServerTimeout,
                                                     ServerUnavailable, chat_body, normalize_base_url)
from rationalrewards.critic.critic import Critic, Item
from rationalrewards.critic.prompting import ChatRequest
from rationalrewards.judging.rubric import Task
from tests.fixtures.fake_openai import FakeOpenAI, Reply, completion
from tests.unit.rr_sample_answers import T2I_FULL, T2I_FULL_SCORES

OPTS = GenerationOptions(max_new_tokens=64, temperature=0.0, seed=7)


def req(text: str = "a red cat", color=(200, 30, 30), size=(32, 24)) -> ChatRequest:
    return ChatRequest(parts=(("text", "Judge "), ("image", Image.new("RGB", size, color)), ("text", f" for: {text}")))


def user_text(body: dict) -> str:
    return "".join(p.get("text", "") for p in body["messages"][-1]["content"])


@pytest.fixture
def peer():
    with FakeOpenAI(answer=lambda body: "echo:" + user_text(body)) as p:
        yield p


def backend(peer_or_url, model: str = "critic", **kw) -> OpenAIServerBackend:
    kw.setdefault("backoff_s", 0.01)
    kw.setdefault("timeout_s", 5)
    url = peer_or_url if isinstance(peer_or_url, str) else peer_or_url.url
    return OpenAIServerBackend(url, model, **kw)


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- the request ---------------------------------------------------------------------------------------

def test_request_keeps_part_order_pixels_and_options(peer):
    img = Image.fromarray(np.random.default_rng(1).integers(0, 255, (24, 40, 3), dtype=np.uint8))
    r = ChatRequest(parts=(("text", "A "), ("image", img), ("text", " B "), ("image", Image.new("RGB", (16, 16))),
                           ("text", " C")), system="be strict")
    assert backend(peer).generate([r], OPTS) == ["echo:A  B  C"]
    [sent] = peer.chat_requests()
    body = sent.body
    assert {k: body[k] for k in ("model", "max_tokens", "temperature", "top_p", "seed", "stream")} == {
        "model": "critic", "max_tokens": 64, "temperature": 0.0, "top_p": 1.0, "seed": 7, "stream": False}
    assert body["messages"][0] == {"role": "system", "content": "be strict"}
    content = body["messages"][1]["content"]
    assert [p["type"] for p in content] == ["text", "image_url", "text", "image_url", "text"]
    url = content[1]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    decoded = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert decoded.size == (40, 24) and np.array_equal(np.asarray(decoded.convert("RGB")), np.asarray(img))
    assert "Authorization" not in sent.headers


def test_answers_come_back_in_request_order(peer):
    """The first request is answered last (held until the other two were replied to)."""
    others_done = threading.Event()

    def first_last(body):
        if "first" in user_text(body):
            return Reply(body=completion("echo:" + user_text(body)), hold=others_done)
        return Reply(body=completion("echo:" + user_text(body)))

    peer.script = [first_last] * 3
    watcher = threading.Thread(target=lambda: (peer.wait_until(lambda p: len(p.replied) >= 2, what="two replies"),
                                               others_done.set()), daemon=True)
    watcher.start()
    out = backend(peer, max_concurrency=3).generate([req("first"), req("second"), req("third")], OPTS)
    watcher.join()
    assert out == [f"echo:Judge  for: {w}" for w in ("first", "second", "third")]
    assert "first" in user_text(peer.replied[-1].body)          # it really was answered last


def test_concurrency_is_bounded(peer):
    """Replies are held until two requests are in flight at once: the bound is used and never exceeded."""
    two_at_once = threading.Event()
    peer.hold = two_at_once
    watcher = threading.Thread(target=lambda: (peer.wait_until(lambda p: p.in_flight >= 2, what="2 in flight"),
                                               two_at_once.set()), daemon=True)
    watcher.start()
    out = backend(peer, max_concurrency=2).generate([req(str(i)) for i in range(6)], OPTS)
    watcher.join()
    assert len(out) == 6 and len(peer.chat_requests()) == 6
    assert peer.max_in_flight == 2


def test_base_url_normalisation():
    assert normalize_base_url(" http://h:8000/v1/ ") == "http://h:8000/v1"
    assert normalize_base_url("http://h:8000/v1/chat/completions") == "http://h:8000/v1"
    with pytest.raises(ValueError, match="http://127.0.0.1:8000/v1"):
        normalize_base_url("127.0.0.1:8000")
    assert OpenAIServerBackend("http://h:8000/v1", "m").root_url == "http://h:8000"


# -- failures -----------------------------------------------------------------------------------------

def test_timeout_is_a_clear_error_and_not_retried(peer):
    """The peer never answers (until the test is over): the read timeout, not an answer, ends the call."""
    never = threading.Event()
    peer.hold = never
    try:
        with pytest.raises(ServerTimeout, match=r"within 0\.2 s.*timeout_s"):
            backend(peer, timeout_s=0.2, retries=3).generate([req()], OPTS)
        assert len(peer.chat_requests()) == 1   # the server may still be generating: no second copy
    finally:
        never.set()


@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_transient_errors_are_retried_with_bounded_backoff(peer, status):
    peer.script = [Reply(status, {"error": {"message": "busy"}}), Reply(status, "plain text failure")]
    assert backend(peer, retries=2, backoff_s=0.02).generate([req()], OPTS) == ["echo:Judge  for: a red cat"]
    assert len(peer.chat_requests()) == 3


def test_retry_after_is_honoured_and_capped(peer):
    """Honoured: the peer behaves like a rate-limited server and refuses (with 429) any retry that comes
    before the Retry-After it announced; the call still needs exactly three requests, so no retry was
    early. Capped: a Retry-After of 10 minutes, capped by backoff_max_s, does not hold the call (it is
    waited on with a generous limit still far below 10 minutes)."""
    retry_at: list[float] = []      # when the peer allows the next request (its own clock)
    early: list[int] = []

    def limited(status: int, retry_after: float, enforce: bool):
        def reply(body):
            if retry_at and time.monotonic() < retry_at[-1]:
                early.append(len(peer.chat_requests()))
                return Reply(429, {"error": {"message": "too early"}}, headers={"Retry-After": "0"})
            retry_at.append(time.monotonic() + retry_after if enforce else 0.0)
            return Reply(status, {"error": {"message": "slow down"}}, headers={"Retry-After": f"{retry_after:g}"})
        return reply

    peer.script = [limited(429, 0.3, enforce=True), limited(503, 600, enforce=False)]
    result: list = []
    call = threading.Thread(target=lambda: result.append(
        backend(peer, retries=2, backoff_s=0.0, backoff_max_s=0.4).generate([req()], OPTS)), daemon=True)
    call.start()
    call.join(timeout=120)
    assert not call.is_alive(), "a 600 s Retry-After was not capped by backoff_max_s"
    assert early == [], f"request(s) {early} came before the Retry-After had passed"
    assert result == [["echo:Judge  for: a red cat"]] and len(peer.chat_requests()) == 3


def test_persistent_5xx_names_status_message_and_tries(peer):
    peer.script = [Reply(502, {"error": {"message": "upstream exploded"}})] * 4
    with pytest.raises(ServerUnavailable) as exc:
        backend(peer, retries=3).generate([req()], OPTS)
    msg = str(exc.value)
    assert "HTTP 502" in msg and "upstream exploded" in msg and "tried 4 times" in msg and peer.url in msg
    assert len(peer.chat_requests()) == 4


def test_other_4xx_is_not_retried_and_keeps_the_server_message(peer):
    # vLLM's wording mentions "model", yet the model is served: a plain error, not "model not served"
    peer.script = [Reply(400, {"error": {"message": "This model's maximum context length is 4096 tokens."}})]
    with pytest.raises(ServerError, match="HTTP 400.*maximum context length") as exc:
        backend(peer, retries=3).generate([req()], OPTS)
    assert not isinstance(exc.value, ModelNotServed)
    assert len(peer.chat_requests()) == 1


@pytest.mark.parametrize("reply, match", [
    (Reply(200, "<html><body>502 Bad Gateway from the proxy</body></html>"), "not JSON.*Bad Gateway"),
    (Reply(200, {"object": "chat.completion", "choices": []}), "'choices' missing or empty"),
    (Reply(200, {"error": {"message": "engine crashed"}}), "'choices' missing.*engine crashed"),
    (Reply(200, ["not", "an", "object"]), "'choices' missing"),
    (Reply(200, {"choices": [{"message": {"role": "assistant", "content": None}, "finish_reason": "length"}]}),
     "without text.*length"),
])
def test_garbage_answers_are_clear_errors(peer, reply, match):
    peer.script = [reply]
    with pytest.raises(ServerAnswerError, match=match):
        backend(peer).generate([req()], OPTS)
    assert len(peer.chat_requests()) == 1


def test_wrong_model_lists_the_served_models(peer):
    peer.models = ["critic-t2i", "critic-edit"]
    with pytest.raises(ModelNotServed) as exc:
        backend(peer, model="TIGER-Lab/RationalRewards-8B-T2I").generate([req()], OPTS)
    msg = str(exc.value)
    assert "'TIGER-Lab/RationalRewards-8B-T2I'" in msg and "critic-t2i, critic-edit" in msg
    assert "--served-model-name" in msg


def test_404_without_model_listing_points_at_base_url(peer):
    b = OpenAIServerBackend(peer.root + "/api", "critic", backoff_s=0.01)   # no /v1: every route is 404
    with pytest.raises(ServerError, match=r"HTTP 404.*Check base_url.*/v1"):
        b.generate([req()], OPTS)


def test_connection_refused_names_the_url():
    url = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(ServerUnavailable) as exc:
        backend(url, retries=1).generate([req()], OPTS)
    msg = str(exc.value)
    assert url in msg and "connection refused" in msg and "tried 2 times" in msg and "vllm serve" in msg


# -- the API key ---------------------------------------------------------------------------------------

def test_a_server_that_dies_mid_batch_says_how_far_the_batch_got():
    with FakeOpenAI(answer="ok", die_at=3) as dying:
        b = backend(dying, max_concurrency=1, retries=1)
        with pytest.raises(ServerUnavailable) as failed:
            b.generate([req(f"cat {i}") for i in range(4)], OPTS)
        assert dying.dead and len(dying.chat_requests()) == 3
    msg = str(failed.value)
    assert f"cannot reach the critic server at {dying.url}/chat/completions (connection refused) (tried 2 times)" in msg
    assert msg.endswith("The batch stopped after 2 of 4 critiques; run it again once the server answers.")


def test_api_key_is_sent_as_bearer_from_the_named_variable(peer, monkeypatch):
    monkeypatch.setenv("RR_TEST_CRITIC_KEY", "sk-unit-4242")
    b = backend(peer, api_key_env="RR_TEST_CRITIC_KEY")
    b.generate([req()], OPTS)
    assert peer.chat_requests()[0].headers["Authorization"] == "Bearer sk-unit-4242"
    assert "sk-unit-4242" not in repr(b) and "sk-unit-4242" not in repr(vars(b))


def test_missing_key_variable_is_named_and_nothing_is_sent(peer, monkeypatch):
    monkeypatch.delenv("RR_TEST_UNSET_KEY", raising=False)
    with pytest.raises(ApiKeyError, match=r"RR_TEST_UNSET_KEY.*not set.*restart ComfyUI"):
        backend(peer, api_key_env="RR_TEST_UNSET_KEY").generate([req()], OPTS)
    assert peer.requests == []


@pytest.mark.parametrize("pasted", ["sk-proj-Abc123xyz", "hf_AbCdEfGhIjKlMnOp1234567890", "Bearer abc"])
def test_a_pasted_key_is_refused_without_echoing_it(pasted):
    with pytest.raises(ApiKeyError, match="NAME of an environment variable") as exc:
        OpenAIServerBackend("http://127.0.0.1:8000/v1", "m", api_key_env=pasted)
    assert pasted not in str(exc.value)


def test_refused_key_names_the_variable(peer, monkeypatch):
    monkeypatch.setenv("RR_TEST_CRITIC_KEY", "wrong")
    peer.script = [Reply(401, {"error": {"message": "invalid api key"}})]
    with pytest.raises(ApiKeyError, match=r"HTTP 401: invalid api key.*\$RR_TEST_CRITIC_KEY"):
        backend(peer, api_key_env="RR_TEST_CRITIC_KEY").generate([req()], OPTS)


# -- check(): what the node runs when it connects ------------------------------------------------------

def test_check_picks_the_only_model_and_rejects_wrong_ones(peer):
    assert backend(peer, model="").check() == "critic"
    with pytest.raises(ModelNotServed, match="serves: critic"):
        backend(peer, model="other").check()
    peer.models = ["a", "b"]
    with pytest.raises(ModelNotServed, match="serves 2 models: a, b"):
        backend(peer, model="").check()
    with pytest.raises(ServerUnavailable, match="connection refused"):
        backend(f"http://127.0.0.1:{free_port()}/v1", retries=0).check()


# -- progress, cancel, forced answers --------------------------------------------------------------------

def test_progress_reports_each_finished_request(peer):
    calls = []
    backend(peer, max_concurrency=2).generate([req(str(i)) for i in range(3)], OPTS,
                                              progress=lambda done, total: calls.append((done, total)))
    assert calls == [(0, 64), (64, 64)] * 3


def test_should_stop_cancels_pending_requests(peer):
    """Request 0 is answered; every later one is held by the peer until the test ends. Stopping after the
    first answer must end the call (a backend that waited for the held requests would never return) and
    send none of the queued ones."""
    release = threading.Event()
    peer.script = [Reply(body=completion("echo:first"))]
    peer.hold = release
    finished, raised = [], []

    def call():
        try:
            backend(peer, max_concurrency=1).generate(
                [req(str(i)) for i in range(8)], OPTS, progress=lambda d, t: finished.append(d),
                should_stop=lambda: len(finished) >= 2)   # stop after the first finished request
        except GenerationInterrupted as e:
            raised.append(e)

    worker = threading.Thread(target=call, daemon=True)
    try:
        worker.start()
        worker.join(timeout=60)
        assert not worker.is_alive(), "generate() did not return after should_stop (it waited for held requests)"
        assert raised, "should_stop did not raise GenerationInterrupted"
    finally:
        release.set()
    peer.wait_until(lambda p: p.in_flight == 0, what="the abandoned in-flight request to land")
    assert 1 <= len(peer.chat_requests()) <= 2          # the answered one, at most the one already in flight


def test_should_stop_interrupts_a_backoff(peer):
    """A 10-minute backoff (Retry-After) is cut short by should_stop, set once the first attempt failed."""
    peer.script = [Reply(503, {}, headers={"Retry-After": "600"})]
    flag = threading.Event()
    raised = []

    def call():
        try:
            backend(peer, backoff_max_s=900).generate([req()], OPTS, should_stop=flag.is_set)
        except GenerationInterrupted as e:
            raised.append(e)

    worker = threading.Thread(target=call, daemon=True)
    worker.start()
    peer.wait_until(lambda p: len(p.replied) == 1, what="the failed first attempt")
    flag.set()
    worker.join(timeout=120)
    assert not worker.is_alive(), "should_stop did not cut the 600 s backoff short"
    assert raised and len(peer.chat_requests()) == 1


def test_forced_answers_still_send_a_cheap_request(peer):
    out = backend(peer).generate([req("one"), req("two")], OPTS, forced=["scripted critique", None])
    assert out == ["scripted critique", "echo:Judge  for: two"]
    sent = {user_text(r.body): r.body["max_tokens"] for r in peer.chat_requests()}
    assert sent == {"Judge  for: one": 1, "Judge  for: two": 64}


def test_a_critic_on_the_server_parses_the_answer(peer):
    peer.answer = T2I_FULL
    critic = Critic(backend=backend(peer), max_pixels=32 * 32)
    [crit] = critic.critique([Image.new("RGB", (64, 64), (9, 9, 9))], "a red cat with a HELLO sign", OPTS)
    assert {k: crit.score(k) for k in T2I_FULL_SCORES} == T2I_FULL_SCORES
    url = peer.chat_requests()[0].body["messages"][-1]["content"]
    img = next(Image.open(io.BytesIO(base64.b64decode(p["image_url"]["url"].split(",", 1)[1])))
               for p in url if p["type"] == "image_url")
    assert img.width * img.height <= 32 * 32   # max_pixels applied before upload


# -- vLLM sleep mode -------------------------------------------------------------------------------------

def test_sleep_between_runs_wakes_before_and_sleeps_after(peer):
    b = backend(peer, sleep_between_runs=True)
    b.sleep()
    assert peer.sleeping and b.is_sleeping()
    peer.requests.clear()
    b.generate([req("x"), req("y")], OPTS)
    calls = peer.calls()
    assert calls[0] == "POST /wake_up" and calls[-1] == "POST /sleep"
    assert sorted(calls[1:-1]) == ["POST /v1/chat/completions"] * 2
    assert peer.requests[-1].query == {"level": ["1"]}
    assert peer.sleeping


def test_sleep_follows_a_failed_run_too(peer):
    b = backend(peer, model="missing", sleep_between_runs=True)
    with pytest.raises(ModelNotServed):
        b.generate([req()], OPTS)
    assert peer.calls()[0] == "POST /wake_up" and peer.calls()[-1] == "POST /sleep" and peer.sleeping


def test_sleep_mode_off_keeps_the_endpoints_untouched(peer):
    backend(peer).generate([req()], OPTS)
    assert peer.calls() == ["POST /v1/chat/completions"]


def test_missing_sleep_endpoints_explain_how_to_start_vllm():
    with FakeOpenAI(sleep_mode=False) as p:
        with pytest.raises(ServerError, match=r"/sleep endpoint.*--enable-sleep-mode.*VLLM_SERVER_DEV_MODE=1"):
            backend(p).sleep()
        with pytest.raises(ServerError, match="/wake_up endpoint"):
            backend(p, sleep_between_runs=True).generate([req()], OPTS)


# -- a real peer: transformers serve with the tiny critic ---------------------------------------------------

SPECIAL = re.compile(r"<\|(?:endoftext|im_start|im_end|vision_start|vision_end|image_pad|video_pad)\|>")


@pytest.fixture(scope="session")
def tf_serve(tiny_models_dir):
    from tests.comfy_server import ARTIFACTS_DIR
    from tests.fixtures.transformers_serve import TransformersServe, serving_available
    if not serving_available():
        pytest.fail("transformers serve needs `pip install 'transformers[serving]'` (scripts/setup_env.sh --test)",
                    pytrace=False)
    log = ARTIFACTS_DIR / f"transformers-serve-{os.getpid()}.log"
    server = TransformersServe(tiny_models_dir / "tiny-qwen3vl", log)
    server.start()
    yield server
    server.stop()


def _plain(text: str) -> str:
    return SPECIAL.sub("", text).strip()


def _images() -> list[Image.Image]:
    rng = np.random.default_rng(3)
    return [Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)) for w, h in ((96, 64), (50, 120))]


def test_greedy_parity_with_the_in_process_backend(tf_serve, qwen3_critic, tmp_path):
    """Same tiny checkpoint, images, template and greedy decoding: the same answer.

    What legitimately differs is only the text post-processing of transformers serve: its Qwen response
    parser decodes with special tokens kept (it looks for <think>/<tool_call> markers), ends the content at
    <|im_end|> and strips surrounding whitespace; the in-process backend skips special tokens and keeps
    whitespace. A random-weight model does emit special tokens such as <|im_start|> mid-answer, so both sides
    are compared without special tokens and outer whitespace; every other character must match.
    """
    opts = GenerationOptions(max_new_tokens=24, temperature=0.0, seed=0)
    server = Critic(backend=OpenAIServerBackend(tf_serve.url, tf_serve.model, max_concurrency=2, timeout_s=60),
                    max_pixels=qwen3_critic.max_pixels)
    items = [Item(Task.T2I, "pointwise", "a red cat holding a sign", (img,)) for img in _images()]
    remote = server.run(items, opts)
    local = [qwen3_critic.run([it], opts)[0] for it in items]   # one at a time: no padding in play
    assert [_plain(r) for r in remote] == [_plain(a) for a in local]
    assert all(local)   # something was written
    # the image matters: behind the shipped rubric's ~800 tokens a random tiny model's greedy text can be the
    # same for both images, so this is checked (with the same parity) on a short template with a system part
    (tmp_path / "t2i_pointwise.txt").write_text("[system]\nJudge images.\n[user]\n<image>\nUser Instruction: "
                                                "{request}", encoding="utf-8")
    short_server = dataclasses.replace(server, template_dir=tmp_path)
    short_local = dataclasses.replace(qwen3_critic, template_dir=tmp_path)
    short = [short_local.run([it], opts)[0] for it in items]
    assert [_plain(r) for r in short_server.run(items, opts)] == [_plain(a) for a in short]
    assert short[0] != short[1]

    # the server built the same prompt: same number of prompt tokens (chat template + image tokens)
    import requests
    request = qwen3_critic.build(items[1])
    body = chat_body(request, opts, tf_serve.model, max_tokens=1)
    body = {k: v for k, v in body.items() if k not in OPTIONAL_FIELDS}   # transformers serve refuses them
    usage = requests.post(tf_serve.url + "/chat/completions", json=body, timeout=60).json()["usage"]
    assert usage["prompt_tokens"] == qwen3_critic.backend.encode([request])["input_ids"].shape[1]


def test_real_server_wrong_model_and_forced_answer(tf_serve):
    b = OpenAIServerBackend(tf_serve.url, "RationalRewards-8B-T2I", timeout_s=60)
    with pytest.raises(ModelNotServed) as exc:   # transformers serve answers 400 "Server is pinned to ..."
        b.generate([req()], OPTS)
    assert tf_serve.model in str(exc.value)
    b.model = ""
    assert b.check() == tf_serve.model
    assert b.generate([req()], OPTS, forced=["## Score: 3"]) == ["## Score: 3"]


# -- Retry-After and jitter (the waits asked for, not measured) ------------------------------------------

def test_retry_after_reads_seconds_and_http_dates():
    from datetime import datetime, timezone

    from rationalrewards.backends.openai_server import retry_after_seconds
    now = datetime(2026, 12, 1, 10, 0, 0, tzinfo=timezone.utc)
    assert retry_after_seconds("2", now) == 2.0 and retry_after_seconds(" 0.5 ", now) == 0.5
    assert retry_after_seconds("Tue, 01 Dec 2026 10:00:30 GMT", now) == 30.0
    assert retry_after_seconds("Tue, 01 Dec 2026 09:59:00 GMT", now) == 0.0      # already past: no wait
    assert retry_after_seconds("-3", now) == 0.0
    for garbage in (None, "", "soon", "nan", "Tue, 99 Foo 2026"):
        assert retry_after_seconds(garbage, now) is None


def test_waits_follow_retry_after_dates_and_jittered_backoff(peer):
    from email.utils import format_datetime
    from datetime import datetime, timedelta, timezone
    later = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=20), usegmt=True)
    peer.script = [Reply(503, {}, headers={"Retry-After": later}), Reply(429, {}, headers={"Retry-After": "0.25"}),
                   Reply(502, {}), Reply(500, {})]
    b = backend(peer, retries=4, backoff_s=0.05, backoff_max_s=30)
    waits: list[float] = []
    b._sleep = lambda seconds, stopped: waits.append(seconds)
    assert b.generate([req()], OPTS) == ["echo:Judge  for: a red cat"]
    assert len(peer.chat_requests()) == 5 and len(waits) == 4
    assert 15 < waits[0] <= 20 and waits[1] == 0.25                 # the server's date, then its seconds
    assert 0.2 <= waits[2] <= 0.25 and 0.4 <= waits[3] <= 0.45      # 0.05 * 2^n plus up to 0.05 of jitter
    capped = backend(peer, retries=1, backoff_s=0.05, backoff_max_s=0.1)
    peer.script = [Reply(503, {}, headers={"Retry-After": later})]
    capped._sleep = lambda seconds, stopped: waits.append(seconds)
    capped.generate([req()], OPTS)
    assert waits[-1] == 0.1
