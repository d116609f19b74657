"""Issue #23, many prompts: a burst of critiques queued at once in the real ComfyUI server, with Cancel in the
middle (the running prompt interrupted, two pending ones deleted from the queue). The server answers its
HTTP API promptly throughout, the cancelled prompts stop or never run, and every other prompt finishes with
the critique of its own prompt, the same as when it runs alone.

The critic is the scripted OpenAI-compatible peer: each prompt's answer (and so its scores) depends on the
prompt's text, and one prompt's answer is held back until the test has cancelled, so "in the middle" is
an order of events, not a sleep."""
from __future__ import annotations

import json
import re
import threading
import time

import pytest

from rationalrewards.judging.parser import parse_critique
from tests.comfy_server import Graph, execution_error, interrupted, outputs
from tests.fixtures.fake_openai import FakeOpenAI
from tests.integration.test_server_critic import MODEL, connect
from tests.twins import pointwise_answer

pytestmark = pytest.mark.integration

BURST = 8
HELD, DELETED = 2, (4, 6)       # the prompt running when Cancel comes, and two still waiting
SCORES = [(1.5, 2), (4, 3.5), (2, 2), (3, 2.5), (2.5, 4), (1, 1), (3.5, 3), (2, 3.5)]
RESPONSIVE_S = 2.0              # generous: a loaded 2-core machine, and the worker is busy


def prompt_text(i: int, seed: int) -> str:
    return f"burst prompt {i}: a red cat on a blue sofa, take {seed}"


def index_of(body: dict) -> int:
    return int(re.search(r"burst prompt (\d+):", json.dumps(body)).group(1))


def answer(body: dict) -> str:
    return pointwise_answer(*SCORES[index_of(body)])


def critique_graph(peer_url: str, i: int, seed: int, critique_seed: int) -> tuple[Graph, object]:
    g = Graph()
    critic = connect(g, peer_url, max_concurrency=1, retries=0)
    img = g.node("EmptyImage", width=32, height=32, batch_size=1, color=(seed + i) % 0xFFFFFF)
    crit = g.node("RR_CritiqueImage", critic=critic, image=img, prompt=prompt_text(i, seed), weights="equal",
                  max_new_tokens=256, temperature=0.0, seed=critique_seed)
    return g, crit


def scores_of(card: dict) -> tuple[dict, float]:
    return {d["key"]: d["score"] for d in card["dimensions"]}, card["overall"]


def test_a_burst_with_cancel_in_the_middle(comfy_server):
    seed = comfy_server.fresh_seed()
    release = threading.Event()
    with FakeOpenAI(models=(MODEL,), answer=answer) as peer:
        peer.hold, peer.hold_if = release, (lambda body: index_of(body) == HELD)
        graphs = [critique_graph(peer.url, i, seed, critique_seed=seed % 1000) for i in range(BURST)]
        ids = [comfy_server.queue(g) for g, _ in graphs]
        try:
            peer.wait_until(lambda p: any(index_of(r.body) == HELD for r in p.chat_requests()),
                            timeout=120, what=f"prompt {HELD}'s critique request")
            # the worker is busy in prompt HELD: the HTTP API still answers at once
            slowest = 0.0
            for path in ("/system_stats", "/queue", f"/history/{ids[0]}") * 3:
                t0 = time.monotonic()
                comfy_server.get(path, timeout=30).raise_for_status()
                slowest = max(slowest, time.monotonic() - t0)
            print(f"slowest API answer while a critique runs: {slowest * 1000:.0f} ms")
            assert slowest < RESPONSIVE_S
            queue = comfy_server.queue_state()
            assert [item[1] for item in queue["queue_running"]] == [ids[HELD]]
            assert {item[1] for item in queue["queue_pending"]} == set(ids[HELD + 1:])

            # Cancel: delete two waiting prompts, interrupt the running one
            comfy_server.post("/queue", json={"delete": [ids[i] for i in DELETED]}).raise_for_status()
            comfy_server.interrupt(ids[HELD])
            stopped = comfy_server.wait(ids[HELD], timeout=60)
        finally:
            release.set()     # the abandoned request's answer goes out (and is ignored)
        done = {i: comfy_server.wait(ids[i], timeout=120) for i in range(BURST) if i != HELD and i not in DELETED}
        sent = sorted({index_of(r.body) for r in peer.chat_requests()})

    assert interrupted(stopped) and execution_error(stopped) is None
    assert graphs[HELD][1].id not in outputs(stopped)
    history = comfy_server.history()
    assert all(ids[i] not in history for i in DELETED)
    assert sent == [i for i in range(BURST) if i not in DELETED]      # the deleted ones never ran
    for i, entry in done.items():
        assert entry["status"]["status_str"] == "success", (i, entry["status"])
        [card] = outputs(entry)[graphs[i][1].id]["rr_critiques"]
        expected = parse_critique(answer({"p": prompt_text(i, seed)})).to_dict("equal")   # its own answer
        assert scores_of(card) == scores_of(expected), i

    # the same prompt alone (a new critique seed, so nothing comes from the cache): the same critique
    lone = 1
    with FakeOpenAI(models=(MODEL,), answer=answer) as peer:
        g, crit = critique_graph(peer.url, lone, seed, critique_seed=seed % 1000 + 1)
        [alone] = outputs(comfy_server.run(g, timeout=120))[crit.id]["rr_critiques"]
    [in_burst] = outputs(done[lone])[graphs[lone][1].id]["rr_critiques"]
    assert scores_of(alone) == scores_of(in_burst)
    assert comfy_server.server.alive()
