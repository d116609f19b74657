"""The repair loop's card in the real frontend: the shipped workflow (tiny SD1.5 inpainting, tiny grounding
models, scripted critic) loaded and queued from the page; the card shows every round with its mask over the
image it repaired, the result, the regions and the scores before and after, all from the node's payload."""
from __future__ import annotations

import json

import pytest

from tests.browser.test_critique_card import shown_overall, shown_score
from tests.comfy_server import outputs
from tests.fixtures import tiny_grounding as T
from tests.integration.test_localise_workflow import grounding_models  # noqa: F401  (module fixture)
from tests.twins import pointwise_answer, shipped_workflow

pytestmark = pytest.mark.integration

REGIONS = "REGION: left hand | Physical and Visual Quality | severe\nREGION: sign text | Text Rendering | clear"


def repair_workflow(models, seed: int, script: list[dict]) -> dict:
    """The shipped repair workflow with the tiny models, 64 px, and every critic link through Replay."""
    wf = shipped_workflow("repair_regions_loop", models, seed)
    for n in wf["nodes"]:
        v = n.get("widgets_values")
        if n["type"] == "RR_LoadGrounding":
            v[:2] = [T.GDINO_NAME, T.SAM_NAME]
        elif n["type"] == "RR_RepairLoopStart":
            v[:2] = [seed, "fixed"]
            v[6:8] = [0.0, 0.0]                  # box and phrase thresholds: the random detector finds something
            v[9:12] = [1, 1, 1.0]                # grow, feather, no area cap
    loader = next(n for n in wf["nodes"] if n["type"] == "RR_LoadCritic")
    rid = wf["last_node_id"] = wf["last_node_id"] + 1
    out_links = loader["outputs"][0]["links"]
    wf["last_link_id"] += 1
    wf["nodes"].append({"id": rid, "type": "RR_ReplayAnswers", "pos": [loader["pos"][0], loader["pos"][1] + 420],
                        "size": [340, 160], "flags": {}, "order": 0, "mode": 0,
                        "inputs": [{"name": "critic", "type": "RR_CRITIC", "link": wf["last_link_id"]}],
                        "outputs": [{"name": "critic", "type": "RR_CRITIC", "slot_index": 0, "links": out_links}],
                        "properties": {"Node name for S&R": "RR_ReplayAnswers"}, "widgets_values": [json.dumps(script)]})
    for link in wf["links"]:
        if link[0] in out_links:
            link[1], link[2] = rid, 0
    wf["links"].append([wf["last_link_id"], loader["id"], 0, rid, 0, "RR_CRITIC"])
    loader["outputs"][0]["links"] = [wf["last_link_id"]]
    return wf


def test_repair_card_shows_each_rounds_mask_result_and_scores(comfy_page, comfy_server, models_dir, grounding_models):
    seed = comfy_server.fresh_seed()
    critique = pointwise_answer(3.0, 1.5, 2.0, justification="The woman's left hand has six fingers.")
    script = [{"answer": critique, "when_request_contains": "waving"}, {"answer": REGIONS, "mode": "defects"}]
    wf = repair_workflow(models_dir, seed, script)
    end = str(next(n["id"] for n in wf["nodes"] if n["type"] == "RR_RepairLoopEnd"))
    comfy_page.load_workflow(wf)
    entry = comfy_page.queue_and_wait(timeout=400)
    reports = [h for out in outputs(entry).values() for h in out.get("rr_repair", [])]
    final = max(reports, key=lambda h: (bool(h["stop_reason"]), len(h["rounds"])))
    assert len(final["rounds"]) == 2 and final["best"] == 0 and "did not improve" in final["stop_reason"]

    card = comfy_page.wait_card(end, '.rr-repair[data-final="1"]')
    shown = card.evaluate("""c => ({best: c.querySelector('.rr-loop-best').textContent,
        stop: c.querySelector('.rr-stop .rr-text').textContent,
        rounds: [...c.querySelectorAll('.rr-round')].map(r => ({index: r.dataset.round,
            title: r.querySelector('.rr-round-title').textContent,
            best: r.classList.contains('rr-round-best'), overall: r.querySelector('.rr-round-overall').textContent,
            mask: (r.querySelector('.rr-repair-mask img') || {}).dataset?.filename || null,
            maskCaption: (r.querySelector('.rr-repair-mask figcaption') || {}).textContent || null,
            image: r.querySelector('.rr-repair-image img').dataset.filename,
            found: (r.querySelector('.rr-regions-found') || {}).textContent || null,
            chips: [...r.querySelectorAll('.rr-chip')].map(x => [x.dataset.key, x.querySelector('.rr-chip-score').textContent])}))})""")
    assert shown["best"] == "best: round 0" and shown["stop"] == final["stop_reason"]
    r0, r1 = final["rounds"]
    s0, s1 = shown["rounds"]
    assert (s0["title"], s0["best"], s0["mask"], s0["found"]) == ("Round 0 · as given", True, None, None)
    assert s0["overall"] == shown_overall(r0["overall"])
    assert s1["title"] == "Round 1" and s1["overall"] == f"{shown_overall(r1['before'])} → {shown_overall(r1['overall'])}"
    assert s1["found"] == ", ".join(r1["found"]) and set(r1["found"]) <= {"left hand", "sign text"}
    assert s1["maskCaption"] == f"mask · {100 * r1['mask_area']:.1f}%"
    for s, thumbs in zip(shown["rounds"], final["thumbs"], strict=True):
        assert s["image"] == thumbs["image"]["filename"] and s["mask"] == (thumbs.get("mask") or {}).get("filename")
    comfy_page.page.wait_for_function(
        "(id) => [...window.app.graph.getNodeById(Number(id)).widgets.find(w => w.name === 'rr_card').element"
        ".querySelectorAll('img')].every(i => i.complete && i.naturalWidth > 0)", arg=end, timeout=15000)
    for s, r, statuses in zip(shown["rounds"], final["rounds"], final["statuses"], strict=True):
        assert s["chips"] == [[k, shown_score({"score": v, "status": statuses[k]})] for k, v in r["scores"].items()]
    comfy_page.screenshot("repair-card", end)
    assert not comfy_page.errors
