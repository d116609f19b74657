"""Issue #4 end to end in a real ComfyUI: critique -> defect phrases -> GroundingDINO + SAM -> mask -> inpaint ->
re-critique, with the tiny SD1.5 checkpoint, the tiny critic (scripted answers through its real decoding) and
tiny random grounding models (transformers folders and original-format .pth files) in the server's models folder."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest

from tests.comfy_server import ARTIFACTS_DIR, REPO_ROOT, Graph, execution_error, images, outputs
from tests.fixtures import tiny_grounding as T
from tests.twins import add_previews, for_tests, insert_replay, load_twin, pointwise_answer

pytestmark = pytest.mark.integration

TWIN = "critique_localise_inpaint"
PROMPT_WORD = "waving"     # in the twin's prompt: the replay rules match on it
CRITIQUE = pointwise_answer(3.0, 1.5, 2.0, refined="a woman waving with five fingers on each hand, a sign reading OPEN",
                            justification="The woman's left hand has six fingers and the sign text is misspelled.")
REGIONS = "REGION: left hand | Physical and Visual Quality | severe\nREGION: sign text | Text Rendering | clear"
SCRIPT = [{"answer": CRITIQUE, "when_request_contains": PROMPT_WORD},
          {"answer": REGIONS, "mode": "defects"}]


def _cache_key() -> str:
    h = hashlib.sha256()
    for f in (REPO_ROOT / "tests/fixtures/tiny_grounding.py", REPO_ROOT / "models/grounding/convert_groundingdino.py"):
        h.update(f.read_bytes())
    for dist in ("torch", "transformers", "tokenizers", "segment-anything"):
        try:
            h.update(metadata.version(dist).encode())
        except metadata.PackageNotFoundError:
            h.update(b"-")
    return h.hexdigest()[:16]


@pytest.fixture(scope="module")
def grounding_models(models_dir) -> Path:
    """Builds the tiny grounding models once per cache key (test-artifacts/grounding-cache/) and copies them into
    the running server's models folder; the pack registers those folders itself, so late files are listed."""
    cache = ARTIFACTS_DIR / "grounding-cache" / _cache_key()
    if not cache.is_dir():
        staging = cache.parent / f".build-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
        subprocess.run([sys.executable, "-m", "tests.fixtures.tiny_grounding", str(staging)], cwd=REPO_ROOT, env=env,
                       check=True, capture_output=True, timeout=300)
        try:
            os.rename(staging, cache)
        except OSError:      # another session filled the cache first
            shutil.rmtree(staging, ignore_errors=True)
    for folder in (T.GDINO_FOLDER, T.SAM_FOLDER):
        shutil.copytree(cache / folder, models_dir.root / folder, dirs_exist_ok=True)
    return models_dir.root


def tiny_twin(models_dir, seed: int, **localise) -> dict:
    api = insert_replay(add_previews(for_tests(load_twin(TWIN), models_dir, seed, max_new_tokens=1024),
                                     {"23": ["9", 4], "26": ["20", 4]}), SCRIPT)   # the critiques as text
    for node in api.values():
        if node["class_type"] == "RR_LoadGrounding":
            node["inputs"].update(detector=T.GDINO_NAME, segmenter=T.SAM_NAME)
        elif node["class_type"] == "RR_LocaliseDefects":
            node["inputs"].update(dict(box_threshold=0.0, text_threshold=0.0), **localise)
    api["900"] = {"class_type": "MaskToImage", "inputs": {"mask": ["12", 0]}}          # to look at the mask
    api["901"] = {"class_type": "PreviewImage", "inputs": {"images": ["900", 0]}}
    return api


def test_nodes_are_listed_with_tooltips_and_the_tiny_models(comfy_server, grounding_models):
    info = comfy_server.object_info()
    assert comfy_server.pack_import_error() is None
    for node in ("RR_LoadGrounding", "RR_DefectPhrases", "RR_LocaliseDefects"):
        spec = info[node]
        assert spec["category"].startswith("RationalRewards")
        for name, (kind, *opts) in {**spec["input"]["required"], **spec["input"].get("optional", {})}.items():
            assert (opts and opts[0].get("tooltip")) or kind in ("RR_CRITIQUE", "RR_GROUNDING"), f"{node}.{name}"
    load = comfy_server.object_info("RR_LoadGrounding")["RR_LoadGrounding"]["input"]["required"]
    assert {T.GDINO_NAME, T.GDINO_PTH, "IDEA-Research/grounding-dino-tiny"} <= set(load["detector"][1]["options"])
    assert T.BERT_FOLDER not in load["detector"][1]["options"]
    assert {T.SAM_NAME, T.SAM2_NAME, T.SAM_PTH, "none (box masks)"} <= set(load["segmenter"][1]["options"])
    assert info["RR_LocaliseDefects"]["output"] == ["MASK", "IMAGE", "STRING", "STRING", "INT"]


def test_shipped_workflow_fixes_the_localised_defects_and_recritiques(comfy_server, models_dir, grounding_models):
    entry = comfy_server.run(tiny_twin(models_dir, comfy_server.fresh_seed()), timeout=300)
    out = outputs(entry)
    phrases_report = out["24"]["text"][0]
    assert "left hand — physical quality, severe, score 1.5 [critic]" in phrases_report
    assert "sign text — text rendering, clear, score 2 [critic]" in phrases_report
    localisation = out["25"]["text"][0]
    assert localisation.startswith("image 0: found") and "NOTHING FOUND" not in localisation
    assert "Physical and Visual Quality: 1.50" in out["23"]["text"][0]          # the first critique
    assert "Physical and Visual Quality: 1.50" in out["26"]["text"][0]          # the re-critique ran on the fix
    mask = np.asarray(comfy_server.fetch_image(images(entry, "901")[0]).convert("L"))
    assert mask.shape == (64, 64) and mask.max() > 0                            # a real, non-empty mask
    preview = comfy_server.fetch_image(images(entry, "21")[0])
    assert preview.size == (64, 64)
    saved = images(entry, "22")
    assert len(saved) == 1 and comfy_server.fetch_image(saved[0]).size == (64, 64)


def test_nothing_found_gives_an_empty_mask_and_says_so(comfy_server, grounding_models):
    g = Graph()
    img = g.node("EmptyImage", width=40, height=24, batch_size=1, color=comfy_server.fresh_seed() % 0xFFFFFF)
    load = g.node("RR_LoadGrounding", detector=T.GDINO_NAME, segmenter=T.SAM2_NAME, allow_download=False, device="auto")
    loc = g.node("RR_LocaliseDefects", grounding=load, image=img, phrases="left hand", box_threshold=1.0,
                 text_threshold=0.25, max_regions=4, mask_mode="union", grow=8, feather=4, multimask="best", resolution=0)
    mask = g.node("PreviewImage", images=g.node("MaskToImage", mask=loc.out(0)))
    report = g.node("PreviewAny", source=loc.out(3))
    entry = comfy_server.run(g, timeout=120)
    assert outputs(entry)[report.id]["text"][0].startswith("NOTHING FOUND: the mask is all zero")
    pixels = np.asarray(comfy_server.fetch_image(images(entry, mask.id)[0]).convert("L"))
    assert pixels.shape == (24, 40) and pixels.max() == 0


def test_original_checkpoints_and_per_phrase_masks_through_the_server(comfy_server, grounding_models):
    g = Graph()
    img = g.node("EmptyImage", width=72, height=48, batch_size=2, color=comfy_server.fresh_seed() % 0xFFFFFF)
    load = g.node("RR_LoadGrounding", detector=T.GDINO_PTH, segmenter=T.SAM_PTH, allow_download=False, device="auto")
    loc = g.node("RR_LocaliseDefects", grounding=load, image=img, phrases="left hand, sign text!!\n\n...",
                 box_threshold=0.0, text_threshold=0.0, max_regions=3, mask_mode="per_phrase", grow=0, feather=0,
                 multimask="best", resolution=128)
    masks = g.node("PreviewImage", images=g.node("MaskToImage", mask=loc.out(0)))
    show = g.node("PreviewAny", source=loc.out(2))
    count = g.node("PreviewAny", source=loc.out(4))
    entry = comfy_server.run(g, timeout=180)
    refs = images(entry, masks.id)
    assert len(refs) == 4                                            # 2 images x 2 phrases, image-major
    assert all(comfy_server.fetch_image(r).size == (72, 48) for r in refs)
    boxes = json.loads(outputs(entry)[show.id]["text"][0])
    assert [b["phrases"] for b in boxes] == [["left hand", "sign text"]] * 2
    assert all(len(b["detections"]) == 3 for b in boxes)
    assert outputs(entry)[count.id]["text"][0] == "6"


def test_per_phrase_masks_hold_each_phrases_own_boxes_through_the_node(comfy_server, grounding_models):
    """Box masks (no segmenter), no grow/feather: each phrase's mask is the union of that phrase's boxes as the
    node reports them (inside 1 px of tolerance for the rounded coordinates), never another phrase's."""
    g = Graph()
    img = g.node("EmptyImage", width=72, height=48, batch_size=1, color=comfy_server.fresh_seed() % 0xFFFFFF)
    load = g.node("RR_LoadGrounding", detector=T.GDINO_NAME, segmenter="none (box masks)", allow_download=False,
                  device="auto")
    loc = g.node("RR_LocaliseDefects", grounding=load, image=img, phrases="left hand, sign text", box_threshold=0.0,
                 text_threshold=0.0, max_regions=3, mask_mode="per_phrase", grow=0, feather=0, multimask="best",
                 resolution=128)
    masks = g.node("PreviewImage", images=g.node("MaskToImage", mask=loc.out(0)))
    show = g.node("PreviewAny", source=loc.out(2))
    entry = comfy_server.run(g, timeout=180)
    [found] = json.loads(outputs(entry)[show.id]["text"][0])
    planes = [np.asarray(comfy_server.fetch_image(r).convert("L")) > 127 for r in images(entry, masks.id)]
    assert len(planes) == len(found["phrases"]) == 2 and found["detections"]
    yy, xx = np.mgrid[0:48, 0:72]

    def cover(boxes, pad):
        out = np.zeros((48, 72), dtype=bool)
        for x0, y0, x1, y1 in boxes:
            out |= (xx >= x0 - pad) & (xx < x1 + pad) & (yy >= y0 - pad) & (yy < y1 + pad)
        return out
    for phrase, plane in zip(found["phrases"], planes):
        own = [d["box"] for d in found["detections"] if d["phrase"] == phrase]
        assert not (plane & ~cover(own, 1)).any(), f"{phrase}'s mask reaches outside its own boxes"
        assert (plane | ~cover(own, -1)).all(), f"{phrase}'s mask misses part of its own boxes"
        assert own or not plane.any()                                   # no detection: an empty mask


def critique_graph(comfy_server, models_dir, script: list[dict]) -> tuple[Graph, object, object]:
    """Tiny critic (scripted) -> Critique Image of a plain image; returns the graph, the critic and the critique."""
    g = Graph()
    critic = g.node("RR_ReplayAnswers", critic=g.node("RR_LoadCritic", checkpoint=models_dir.critic, allow_download=False,
                                                      dtype="auto", device="auto", attention="sdpa", max_pixels=0,
                                                      batch_size=1, keep_loaded=False),
                    script=json.dumps(script))
    crit = g.node("RR_CritiqueImage", critic=critic, prompt=f"a woman {PROMPT_WORD}", weights="equal",
                  image=g.node("EmptyImage", width=32, height=32, batch_size=1, color=comfy_server.fresh_seed() % 0xFFFFFF),
                  max_new_tokens=1024, temperature=0.0, seed=0)
    return g, critic, crit


def test_defect_phrases_fall_back_to_justifications_and_keep_typed_phrases(comfy_server, models_dir):
    g, critic, crit = critique_graph(comfy_server, models_dir, SCRIPT[:1])      # no 'defects' rule: free decoding
    common = dict(critique_data=crit.out(6), max_regions=4, index=0, max_new_tokens=16, temperature=0.0, seed=0)
    asked = g.node("RR_DefectPhrases", source="ask_critic", critic=critic, typed_phrases="Sky!", score_below=3.5, **common)
    typed = g.node("RR_DefectPhrases", source="typed", typed_phrases="face; the left eye", score_below=3.5, **common)
    calm = g.node("RR_DefectPhrases", source="justifications", typed_phrases="", score_below=1.0, **common)
    shows = [g.node("PreviewAny", source=n.out(i)) for n in (asked, typed, calm) for i in (0, 1)]
    out = outputs(comfy_server.run(g, timeout=120))
    text = [out[s.id]["text"][0] for s in shows]
    assert text[0] == "woman's left hand\nsign text\nsky"        # random weights answer gibberish: justifications
    assert "follow-up answer was unreadable" in text[1] and "[justification]" in text[1] and "sky" in text[1]
    assert text[2] == "face\nleft eye" and "[user]" in text[3]
    assert text[4] == "" and "nothing to fix" in text[5]


def test_user_errors_name_the_node_and_the_fix(comfy_server, models_dir, grounding_models):
    g = Graph()
    load = g.node("RR_LoadGrounding", detector="IDEA-Research/grounding-dino-base", segmenter="none (box masks)",
                  allow_download=False, device="cpu")
    loc = g.node("RR_LocaliseDefects", grounding=load, image=g.node("EmptyImage", width=32, height=32, batch_size=1,
                                                                   color=comfy_server.fresh_seed() % 0xFFFFFF),
                 phrases="hand", box_threshold=0.3, text_threshold=0.25, max_regions=4, mask_mode="union", grow=0,
                 feather=0, multimask="best", resolution=0)
    g.node("PreviewAny", source=loc.out(3))
    err = execution_error(comfy_server.run(g, check=False))
    assert "Load Grounding Models:" in err["exception_message"]
    assert "hf download IDEA-Research/grounding-dino-base" in err["exception_message"]

    g, _, crit = critique_graph(comfy_server, models_dir, SCRIPT)
    phrases = g.node("RR_DefectPhrases", critique_data=crit.out(6), source="ask_critic", typed_phrases="", max_regions=4,
                     score_below=3.5, index=0, max_new_tokens=64, temperature=0.0, seed=0)   # no critic connected
    g.node("PreviewAny", source=phrases.out(1))
    err = execution_error(comfy_server.run(g, check=False, timeout=120))
    assert err["node_type"] == "RR_DefectPhrases" and "needs the critic input" in err["exception_message"]
    assert comfy_server.server.alive()
