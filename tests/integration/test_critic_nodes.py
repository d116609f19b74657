"""Issue #2 end to end: every node listed, shipped workflows queued, bad inputs as clear errors."""
from __future__ import annotations

import json

import pytest
from PIL import Image

from scripts.workflow_format import ui_to_api
from tests.comfy_server import Graph, execution_error, images, outputs
from tests.twins import (add_previews, for_tests, insert_replay, load_twin, load_ui, pairwise_answer,
                         pointwise_answer, twin_names)

pytestmark = pytest.mark.integration

EXPECTED_INPUTS = {
    "RR_LoadCritic": {"checkpoint", "custom_id", "allow_download", "dtype", "device", "attention", "max_pixels",
                      "batch_size", "keep_loaded", "decoding"},
    "RR_ReplayAnswers": {"critic", "script"},
    "RR_CritiqueImage": {"critic", "image", "prompt", "weights", "max_new_tokens", "temperature", "seed"},
    "RR_CritiqueEdit": {"critic", "source", "edited", "instruction", "weights", "max_new_tokens", "temperature",
                        "seed"},
    "RR_Compare": {"critic", "image_a", "image_b", "prompt", "source", "decision", "max_new_tokens", "temperature",
                   "seed"},
    "RR_Rank": {"critic", "images", "prompt", "weights", "max_new_tokens", "temperature", "seed", "mode",
                "both_orders", "decision"},
    "RR_RefinePrompt": {"critique_data", "mode", "keep", "original_prompt", "pick"},
    "RR_RefineLoopStart": {"prompt", "seed", "state"},
    "RR_RefineLoopEnd": {"loop", "image", "critique_data", "max_rounds", "stop_dimensions", "threshold",
                         "stop_when_no_improvement", "seed_policy", "mode", "keep", "weights"},
}


def _inputs(info: dict) -> set[str]:
    return set(info["input"].get("required", {})) | set(info["input"].get("optional", {}))


def test_object_info_lists_every_node_with_its_inputs(comfy_server, models_dir):
    info = comfy_server.object_info()
    assert comfy_server.server.custom_node_import_error() is None
    for node_id, expected in EXPECTED_INPUTS.items():
        assert node_id in info, f"{node_id} missing from /object_info"
        assert expected <= _inputs(info[node_id]), f"{node_id}: missing {expected - _inputs(info[node_id])}"
        assert info[node_id]["category"].startswith("RationalRewards")
        for name, spec in {**info[node_id]["input"]["required"], **info[node_id]["input"].get("optional", {})}.items():
            assert spec[1].get("tooltip") or spec[0] in ("RR_CRITIC", "RR_CRITIQUE", "IMAGE", "RR_LOOP"), \
                f"{node_id}.{name} has no tooltip"
    options = info["RR_LoadCritic"]["input"]["required"]["checkpoint"][1]["options"]
    assert models_dir.critic in options and "TIGER-Lab/RationalRewards-8B-T2I" in options
    critique_outputs = info["RR_CritiqueImage"]["output_name"]
    assert critique_outputs[:4] == ["Text Faithfulness", "Physical and Visual Quality", "Text Rendering", "overall"]
    assert info["RR_CritiqueEdit"]["output_name"][1] == "Image Faithfulness"


@pytest.mark.parametrize("name", twin_names())
def test_ui_workflow_and_api_twin_describe_the_same_graph(comfy_server, name):
    assert ui_to_api(load_ui(name), comfy_server.object_info()) == load_twin(name)


def test_workflows_folder_holds_only_ui_files_with_twins(comfy_server):
    templates = comfy_server.get("/api/workflow_templates").json()
    listed = sorted(next(v for k, v in templates.items() if "RationalRewards" in k))
    from scripts.workflow_layouts import ui_file
    assert listed == sorted(ui_file(n) for n in twin_names())
    for name in twin_names():
        ui = load_ui(name)
        assert "nodes" in ui and "links" in ui, f"workflows/{ui_file(name)}.json is not UI format"


def test_critique_workflow_runs_through_the_real_model_and_marks_unparsed(comfy_server, models_dir):
    """Random weights write gibberish: every score is NaN/missing with warnings, never invented."""
    api = add_previews(for_tests(load_twin("critique_generated_image"), models_dir, comfy_server.fresh_seed()),
                       {"11": ["9", 4], "12": ["9", 5]})
    entry = comfy_server.run(api, timeout=180)
    out = outputs(entry)
    [card] = out["9"]["rr_critiques"]
    assert [d["key"] for d in card["dimensions"]] == ["text_faithfulness", "physical_quality", "text_rendering"]
    assert all(d["status"] == "missing" and d["score"] is None for d in card["dimensions"])
    assert card["overall"] is None and any("no score found" in w for w in card["warnings"])
    critique_text = out["11"]["text"][0]
    assert critique_text.startswith("WARNING:") and "Overall (0-1): unreadable" in critique_text
    assert out["12"]["text"][0] == api["2"]["inputs"]["value"]   # no refined request: the original prompt back
    assert len(images(entry, "10")) == 1


def test_critique_workflow_with_scripted_answer_reports_parsed_scores(comfy_server, models_dir):
    refined = "a red fox sitting in fresh snow at sunrise,\na wooden sign that reads \"WINTER\", sharp focus"
    script = [{"answer": pointwise_answer(3.5, "**2**", "[3]", refined=refined), "when_request_contains": "red fox"}]
    api = insert_replay(add_previews(for_tests(load_twin("critique_generated_image"), models_dir,
                                               comfy_server.fresh_seed(), max_new_tokens=400),
                                     {"11": ["9", 4], "12": ["9", 5]}), script)
    out = outputs(comfy_server.run(api, timeout=180))
    [card] = out["9"]["rr_critiques"]
    assert [d["score"] for d in card["dimensions"]] == [3.5, 2.0, 3.0]
    assert card["overall"] == pytest.approx(((3.5 + 2 + 3) / 3 - 1) / 3)
    assert card["warnings"] == []
    assert out["12"]["text"][0] == refined          # multi-line refined request read to its end
    assert "Text Faithfulness: 3.50" in out["11"]["text"][0]


def test_rank_workflow_sorts_the_batch_and_returns_the_best(comfy_server, models_dir):
    api = add_previews(for_tests(load_twin("rank_batch"), models_dir, comfy_server.fresh_seed()), {"11": ["9", 3]})
    entry = comfy_server.run(api, timeout=240)
    out = outputs(entry)
    [rank] = out["9"]["rr_rank"]
    assert [r["rank"] for r in rank["rows"]] == [1, 2, 3, 4]
    assert [r["index"] for r in rank["rows"]] == [0, 1, 2, 3]      # all unreadable: input order kept
    assert len(out["9"]["images"]) == 4 and len(images(entry, "10")) == 1
    assert out["11"]["text"][0].splitlines()[0].startswith("rank | index | overall")


def test_edit_critique_broadcasts_one_source_over_edits(comfy_server, models_dir):
    g = Graph()
    critic = g.node("RR_LoadCritic", checkpoint=models_dir.critic, custom_id="", allow_download=False, dtype="auto",
                    device="auto", attention="sdpa", max_pixels=0, batch_size=2)
    script = [{"answer": pointwise_answer(4, 3, "N/A", if_=2.5, refined="make it red, keep the rest"),
               "task": "edit"}]
    replay = g.node("RR_ReplayAnswers", critic=critic, script=json.dumps(script))
    seed = comfy_server.fresh_seed()
    source = g.node("EmptyImage", width=64, height=64, batch_size=1, color=seed % 0xFFFFFF)
    edited = g.node("EmptyImage", width=64, height=48, batch_size=3, color=(seed + 7) % 0xFFFFFF)
    crit = g.node("RR_CritiqueEdit", critic=replay, source=source, edited=edited, instruction="make it red",
                  weights="rl_edit", max_new_tokens=400, temperature=0.0, seed=0)
    show = g.node("PreviewAny", source=crit.out(4))
    out = outputs(comfy_server.run(g, timeout=180))
    cards = out[crit.id]["rr_critiques"]
    assert len(cards) == 3
    assert [d["key"] for d in cards[0]["dimensions"]] == ["text_faithfulness", "image_faithfulness",
                                                          "physical_quality", "text_rendering"]
    assert cards[0]["overall"] == pytest.approx(((4 + 3) / 2 - 1) / 3)   # rl_edit leaves Image Faithfulness out
    assert len(out[show.id]["text"]) == 3                                 # a FLOAT list: one overall per image


def test_compare_applies_the_sum_rule(comfy_server, models_dir):
    g = Graph()
    critic = g.node("RR_LoadCritic", checkpoint=models_dir.critic, custom_id="", allow_download=False, dtype="auto",
                    device="auto", attention="sdpa", max_pixels=0, batch_size=4)
    # per-dimension the model says B wins once, but the sums decide: A 3+2+2.5(N/A) = 7.5, B 2+2.5+2.5 = 7
    answer = pairwise_answer([(3, 2, "Image A"), (2, 2.5, "Image B"), ("N/A", "N/A", "N/A")])
    # B's first score unreadable: published counts it 2.5, so A 3+2+2.5 = 7.5 < B 2.5+3+2.5 = 8; strict: undecided
    unreadable = pairwise_answer([(3, "lots", "Image A"), (2, 3, "Image B"), ("N/A", "N/A", "It's a tie")])
    replay = g.node("RR_ReplayAnswers", critic=critic, script=json.dumps([
        {"answer": answer, "mode": "pairwise", "when_request_contains": "red"},
        {"answer": unreadable, "mode": "pairwise", "when_request_contains": "blue"}]))
    seed = comfy_server.fresh_seed()
    a = g.node("EmptyImage", width=64, height=64, batch_size=1, color=seed % 0xFFFFFF)
    b = g.node("EmptyImage", width=64, height=64, batch_size=1, color=(seed + 1) % 0xFFFFFF)
    cmp = g.node("RR_Compare", critic=replay, image_a=a, image_b=b, prompt="a red cat", max_new_tokens=400,
                 temperature=0.1, seed=0)
    published = g.node("RR_Compare", critic=replay, image_a=a, image_b=b, prompt="a blue cat", max_new_tokens=400,
                       temperature=0.1, seed=0, decision="published")
    strict = g.node("RR_Compare", critic=replay, image_a=a, image_b=b, prompt="a blue cat", max_new_tokens=400,
                    temperature=0.1, seed=0, decision="strict")
    show = g.node("PreviewAny", source=cmp.out(0))
    out = outputs(comfy_server.run(g, timeout=300))
    [data] = out[cmp.id]["rr_compare"]
    assert data["winner"] == "A" and data["total_a"] == 7.5 and data["total_b"] == 7.0
    assert data["decision"]["rule"] == "published"                       # the default
    assert [d["winner"] for d in data["dimensions"]] == ["A", "B", "N/A"]   # Winner: N/A is no winner, never A
    assert out[show.id]["text"][0] == "A"
    [pub] = out[published.id]["rr_compare"]
    assert (pub["winner"], pub["total_a"], pub["total_b"]) == ("B", 7.5, 8.0)
    assert pub["decision"]["filled"][0] == "Text Faithfulness (B): unreadable, counted as 2.5"
    assert [d["winner"] for d in pub["dimensions"]] == ["A", "B", "tie"]
    [st] = out[strict.id]["rr_compare"]
    assert st["winner"] == "undecided" and st["total_a"] is None and st["decision"]["rule"] == "strict"


def test_rgba_and_greyscale_images_are_critiqued(comfy_server, models_dir):
    g = Graph()
    critic = g.node("RR_LoadCritic", checkpoint=models_dir.critic, custom_id="", allow_download=False, dtype="auto",
                    device="auto", attention="sdpa", max_pixels=0, batch_size=4)
    seed = comfy_server.fresh_seed()
    rgb = g.node("EmptyImage", width=64, height=64, batch_size=1, color=seed % 0xFFFFFF)
    alpha = g.node("SolidMask", value=0.5, width=64, height=64)
    rgba = g.node("JoinImageWithAlpha", image=rgb, alpha=alpha)
    grey_name = comfy_server.upload_image(Image.new("L", (64, 64), seed % 255))
    grey = g.node("LoadImage", image=grey_name)
    crit_rgba = g.node("RR_CritiqueImage", critic=critic, image=rgba, prompt="a cat", weights="equal",
                       max_new_tokens=16, temperature=0.1, seed=1)
    crit_grey = g.node("RR_CritiqueImage", critic=critic, image=grey.out(0), prompt="a cat", weights="equal",
                       max_new_tokens=16, temperature=0.1, seed=1)
    out = outputs(comfy_server.run(g, timeout=180))
    assert len(out[crit_rgba.id]["rr_critiques"]) == 1 and len(out[crit_grey.id]["rr_critiques"]) == 1


def _critic_graph(models_dir, **critique_inputs):
    g = Graph()
    critic = g.node("RR_LoadCritic", checkpoint=models_dir.critic, custom_id="", allow_download=False, dtype="auto",
                    device="auto", attention="sdpa", max_pixels=0, batch_size=4)
    return g, critic


def _error(comfy_server, g) -> dict:
    entry = comfy_server.run(g, check=False, timeout=120)
    err = execution_error(entry)
    assert err is not None, "expected an execution error"
    return err


@pytest.mark.parametrize("case", ["empty_prompt", "one_pixel", "mismatched_batches", "compare_batch",
                                  "bad_script", "missing_checkpoint"])
def test_bad_inputs_are_clear_execution_errors_and_the_server_stays_up(comfy_server, models_dir, case):
    g, critic = _critic_graph(models_dir)
    seed = comfy_server.fresh_seed()
    img = g.node("EmptyImage", width=64, height=64, batch_size=1, color=seed % 0xFFFFFF)
    common = dict(max_new_tokens=16, temperature=0.1, seed=0)
    if case == "empty_prompt":
        g.node("RR_CritiqueImage", critic=critic, image=img, prompt="   ", weights="equal", **common)
        expect = ["Critique Image:", "prompt is empty"]
    elif case == "one_pixel":
        tiny = g.node("EmptyImage", width=1, height=1, batch_size=1, color=seed % 0xFFFFFF)
        g.node("RR_CritiqueImage", critic=critic, image=tiny, prompt="a cat", weights="equal", **common)
        expect = ["Critique Image:", "1x1"]
    elif case == "mismatched_batches":
        src = g.node("EmptyImage", width=64, height=64, batch_size=2, color=seed % 0xFFFFFF)
        edits = g.node("EmptyImage", width=64, height=64, batch_size=3, color=(seed + 1) % 0xFFFFFF)
        g.node("RR_CritiqueEdit", critic=critic, source=src, edited=edits, instruction="x", weights="equal", **common)
        expect = ["Critique Edit:", "2 source images for 3 images; give one, or one per image"]
    elif case == "compare_batch":
        two = g.node("EmptyImage", width=64, height=64, batch_size=2, color=seed % 0xFFFFFF)
        g.node("RR_Compare", critic=critic, image_a=two, image_b=img, prompt="a cat", **common)
        expect = ["Compare Two Images:", "single images"]
    elif case == "bad_script":
        replay = g.node("RR_ReplayAnswers", critic=critic, script="{not json " + str(seed))
        g.node("RR_CritiqueImage", critic=replay, image=img, prompt="a cat", weights="equal", **common)
        expect = ["Replay Critique Answers:", "not valid JSON"]
    else:
        critic.inputs["custom_id"] = f"TIGER-Lab/NotDownloaded-{seed}"
        g.node("RR_CritiqueImage", critic=critic, image=img, prompt="a cat", weights="equal", **common)
        expect = ["Load Critic", f"NotDownloaded-{seed}", "hf download", "download if missing"]
    err = _error(comfy_server, g)
    for text in expect:
        assert text in err["exception_message"], (text, err["exception_message"])
    # the server is still up and runs a good graph
    g2, critic2 = _critic_graph(models_dir)
    ok = g2.node("EmptyImage", width=64, height=64, batch_size=1, color=(seed + 3) % 0xFFFFFF)
    g2.node("RR_CritiqueImage", critic=critic2, image=ok, prompt="a cat", weights="equal", **common)
    assert comfy_server.run(g2, timeout=120)["status"]["status_str"] == "success"
