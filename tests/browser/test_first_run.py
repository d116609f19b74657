"""First-run feedback in the real frontend (issue 13): while the critic loads and writes, its nodes show
a status line (ComfyUI's progress text), every status is also a log line, and the progress bar reaches
its end when the answer ends (not when the 2048-token budget would)."""
from __future__ import annotations

import json

import pytest

from tests.comfy_server import Graph, outputs
from tests.twins import pointwise_answer

pytestmark = pytest.mark.integration

RECORD = """() => { window.__rr = []; const api = window.comfyAPI.api.api;
  for (const kind of ['progress_text', 'progress', 'executed', 'executing']) {
    api.addEventListener(kind, (e) => window.__rr.push({kind, detail: e.detail})); } }"""

STATUS_ON_NODE = """(id) => { const n = window.app.graph.getNodeById(Number(id));
  const w = n && n.widgets && n.widgets.find(w => w.name === '$$node-text-preview');
  return w ? String(w.value || '') : ''; }"""


def slow_answer(seed: int) -> str:
    """A long critique (the tiny critic is forced through every token of it: a few seconds on CPU)."""
    reason = " ".join(f"detail {i} of the fur and the snow is checked against the request" for i in range(12))
    return pointwise_answer(3.5, 3.0, refined=f"a red fox in fresh snow, sharp ears {seed}", justification=reason)


def test_status_shows_while_the_critic_loads_and_writes_and_the_bar_ends_with_the_answer(comfy_page, comfy_server,
                                                                                          models_dir):
    seed = comfy_server.fresh_seed()
    g = Graph()
    loader = g.node("RR_LoadCritic", checkpoint=models_dir.critic, batch_size=2 + seed % 60)   # a fresh load
    critic = g.node("RR_ReplayAnswers", critic=loader,
                    script=json.dumps([{"answer": slow_answer(seed), "when_request_contains": "red fox"}]))
    img = g.node("EmptyImage", width=64, height=64, batch_size=1, color=seed % 0xFFFFFF)
    crit = g.node("RR_CritiqueImage", critic=critic, image=img, prompt=f"a red fox in snow {seed}",
                  max_new_tokens=2048, temperature=0.0, seed=0)
    comfy_page.page.evaluate(RECORD)
    comfy_page.load_api(g.prompt())
    with comfy_page.page.expect_response(lambda r: r.url.endswith("/api/prompt") and r.request.method == "POST") as sent:
        comfy_page.page.evaluate("() => window.app.queuePrompt(0, 1)")
    prompt_id = sent.value.json()["prompt_id"]
    # while the critic writes, the node says so on the canvas
    comfy_page.page.wait_for_function(f"() => ({STATUS_ON_NODE})('{crit.id}').includes('writing the critique')",
                                      timeout=120_000, polling=50)
    shown_while_running = comfy_page.page.evaluate(STATUS_ON_NODE, crit.id)
    comfy_page.screenshot("status-while-writing", crit.id)
    entry = comfy_server.wait(prompt_id, timeout=180)
    comfy_page.page.wait_for_function(   # the page has seen the node's result too
        f"() => window.__rr.some(e => e.kind === 'executed' && String(e.detail.node) === '{crit.id}')",
        timeout=30_000)
    events = comfy_page.page.evaluate("() => window.__rr")
    [card] = outputs(entry)[crit.id]["rr_critiques"]
    assert [d["score"] for d in card["dimensions"][:2]] == [3.5, 3.0]

    def texts(node_id: str) -> list[str]:
        return [e["detail"]["text"] for e in events if e["kind"] == "progress_text"
                and str(e["detail"]["nodeId"]) == node_id]

    def executed_at(node_id: str) -> int:
        return next(i for i, e in enumerate(events) if e["kind"] == "executed" and str(e["detail"]["node"]) == node_id)

    load_status, crit_status = texts(loader.id), texts(crit.id)
    assert any("loading" in t for t in load_status) and any("loaded in" in t for t in load_status), load_status
    assert any("critiquing 1 item" in t for t in crit_status) and any("done:" in t for t in crit_status), crit_status
    assert "writing the critique" in shown_while_running
    first_status = next(i for i, e in enumerate(events) if e["kind"] == "progress_text"
                        and str(e["detail"]["nodeId"]) == crit.id)
    assert first_status < executed_at(crit.id)                 # the status came before the result
    # every status is a log line too
    log = comfy_server.log_tail(400)
    assert "Load Critic: loading" in log and "Critique Image: writing the critique" in log

    bar = [(e["detail"]["value"], e["detail"]["max"]) for e in events
           if e["kind"] == "progress" and str(e["detail"]["node"]) == crit.id]
    values = [v for v, _ in bar]
    assert bar and all(m == bar[0][1] for _, m in bar)
    assert values == sorted(values), "the bar went backwards"
    assert values[-1] == bar[0][1], "the bar did not reach its end when the answer ended"
    assert len({v for v in values if 0 < v < bar[0][1]}) >= 3, f"the bar did not move with the answer: {values}"
    # the widgets carry the plain names (from the pack's locales), the ids stay what workflows save
    labels = comfy_page.page.evaluate("""(id) => Object.fromEntries(window.app.graph.getNodeById(Number(id))
        .widgets.filter(w => w.name).map(w => [w.name, w.label || w.name]))""", loader.id)
    assert labels["batch_size"] == "images per critic pass" and labels["dtype"] == "precision", labels
    assert not comfy_page.errors
