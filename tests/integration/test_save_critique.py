"""Save Critique (RR_SaveCritique) in the real server: a PNG per judged image with the critique in its
metadata, the same record as a .json beside it, and nothing in either that says where the critic
came from (no API key, no server URL, no folder)."""
from __future__ import annotations

import json
import os
import uuid

import pytest
from PIL import Image

from tests.comfy_server import Graph, execution_error, outputs
from tests.fixtures.fake_openai import FakeOpenAI
from tests.twins import pointwise_answer
from tests.unit.rr_sample_answers import T2I_FULL, T2I_FULL_SCORES

pytestmark = pytest.mark.integration

KEY_ENV = "RR_TEST_SAVE_CRITIQUE_KEY"            # read by the server at start (after collection)
KEY = os.environ.setdefault(KEY_ENV, f"sk-rr-{uuid.uuid4().hex}")
MODEL = "rr-critic-t2i"


def saved_files(models_dir, entry: dict, node_id: str) -> list[tuple[Image.Image, dict]]:
    """(PNG, the JSON beside it) for every image the node reported."""
    found = []
    for ref in outputs(entry)[node_id]["images"]:
        assert ref["type"] == "output"
        path = models_dir.output_dir / ref.get("subfolder", "") / ref["filename"]
        png = Image.open(path)
        png.load()
        beside = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
        found.append((png, beside))
    return found


def test_critiques_from_a_keyed_server_are_saved_in_the_png_and_beside_it_without_the_key(comfy_server, models_dir):
    seed = comfy_server.fresh_seed()
    with FakeOpenAI(models=(MODEL,), answer=T2I_FULL) as peer:
        g = Graph()
        critic = g.node("RR_ServerCritic", base_url=peer.url, model=MODEL, api_key_env=KEY_ENV, max_concurrency=2,
                        timeout_s=30, retries=1, sleep_between_runs=False, max_pixels=0)
        img = g.node("EmptyImage", width=64, height=48, batch_size=2, color=seed % 0xFFFFFF)
        crit = g.node("RR_CritiqueImage", critic=critic, image=img, prompt=f"a red cat holding a HELLO sign {seed}",
                      weights="equal", max_new_tokens=256, temperature=0.0, seed=0)
        save = g.node("RR_SaveCritique", critique_data=crit.out(6), images=img,
                      filename_prefix=f"rr_save/{seed}", embed_workflow=True)
        workflow = {"nodes": [], "links": [], "note": f"the frontend's workflow {seed}"}
        entry = comfy_server.run(g, timeout=60, extra_data={"extra_pnginfo": {"workflow": workflow}})
        assert peer.chat_requests()[0].headers["Authorization"] == f"Bearer {KEY}"   # the key was in use

    files = saved_files(models_dir, entry, save.id)
    assert len(files) == 2
    for (png, beside), shown in zip(files, outputs(entry)[crit.id]["rr_critiques"], strict=True):
        assert set(png.text) == {"prompt", "workflow", "rationalrewards"}           # ComfyUI's own chunks too
        assert json.loads(png.text["workflow"]) == workflow
        record = json.loads(png.text["rationalrewards"])
        assert record == {k: v for k, v in beside.items() if k != "image"}         # one record, two places
        assert record["format"].startswith("rationalrewards.critique/")
        assert beside["image"] == os.path.basename(png.filename)
        assert record["request"].endswith(str(seed))
        assert {d["key"]: d["score"] for d in record["dimensions"]} == T2I_FULL_SCORES
        assert record["dimensions"] == shown["dimensions"] and record["overall"] == shown["overall"]
        everything = json.dumps(record) + "".join(png.text.values())
        assert KEY not in everything
        # where the critic came from is not part of the critique record (it is in ComfyUI's prompt chunk)
        assert peer.url not in json.dumps(record) and KEY_ENV not in json.dumps(record)
    assert KEY not in comfy_server.log_tail(2000)


def test_ranked_images_are_saved_best_first_and_without_the_workflow_no_folder_shows(comfy_server, models_dir):
    seed = comfy_server.fresh_seed()
    g = Graph()
    loader = g.node("RR_LoadCritic", checkpoint=models_dir.critic, custom_id=str(models_dir.critic_path),
                    allow_download=False, dtype="auto", device="auto", attention="sdpa", max_pixels=0, batch_size=4)
    script = [{"answer": pointwise_answer(3, 2.5, refined=f"a fox {seed}"), "when_request_contains": "fox"}]
    critic = g.node("RR_ReplayAnswers", critic=loader, script=json.dumps(script))
    img = g.node("EmptyImage", width=64, height=64, batch_size=3, color=seed % 0xFFFFFF)
    rank = g.node("RR_Rank", critic=critic, images=img, prompt=f"a fox {seed}", weights="equal", max_new_tokens=400,
                  temperature=0.0, seed=0)
    save = g.node("RR_SaveCritique", critique_data=rank.out(5), filename_prefix=f"rr_save/ranked_{seed}",
                  embed_workflow=False)   # images unconnected: the ones the critique judged, in ranked order
    entry = comfy_server.run(g, timeout=240, extra_data={"extra_pnginfo": {"workflow": {"nodes": []}}})
    files = saved_files(models_dir, entry, save.id)
    assert len(files) == 3
    for png, beside in files:
        assert set(png.text) == {"rationalrewards"}          # no prompt, no workflow: only the critique
        assert json.loads(png.text["rationalrewards"]) == {k: v for k, v in beside.items() if k != "image"}
        assert beside["image"] == os.path.basename(png.filename)
        assert [d["score"] for d in beside["dimensions"][:2]] == [3.0, 2.5]
        blob = json.dumps(beside) + "".join(png.text.values())
        assert str(models_dir.base) not in blob and str(models_dir.critic_path) not in blob


def test_a_batch_that_does_not_match_the_critiques_is_a_clear_error(comfy_server, models_dir):
    seed = comfy_server.fresh_seed()
    g = Graph()
    loader = g.node("RR_LoadCritic", checkpoint=models_dir.critic, custom_id="", allow_download=False, dtype="auto",
                    device="auto", attention="sdpa", max_pixels=0, batch_size=4)
    img = g.node("EmptyImage", width=64, height=64, batch_size=1, color=seed % 0xFFFFFF)
    other = g.node("EmptyImage", width=64, height=64, batch_size=2, color=(seed + 1) % 0xFFFFFF)
    crit = g.node("RR_CritiqueImage", critic=loader, image=img, prompt="a fox", weights="equal", max_new_tokens=16,
                  temperature=0.0, seed=0)
    g.node("RR_SaveCritique", critique_data=crit.out(6), images=other, filename_prefix="rr_save/bad",
           embed_workflow=True)
    err = execution_error(comfy_server.run(g, check=False, timeout=120))
    assert err and "Save Critique:" in err["exception_message"] and "2 images for 1 critiques" in err["exception_message"]
