"""The shipped UI workflows explain themselves on the canvas (issue 13): notes, groups, a readable
hand-made layout, a starter that needs no generator, and no text previews that repeat the card.
Read from the files alone; tests/integration checks they match their API twins and run."""
from __future__ import annotations

from pathlib import Path

import pytest

from scripts.workflow_layouts import LAYOUTS, ui_file
from tests.twins import TWINS, load_twin, load_ui, twin_names

WORKFLOWS = Path(__file__).parent.parent.parent / "workflows"
NAMES = twin_names()
NOTE_TYPES = ("Note", "MarkdownNote")
TITLE_BAR = 30                    # the frontend draws a node's title above its pos
CARD_NODES = ("RR_CritiqueImage", "RR_CritiqueEdit", "RR_Compare", "RR_Rank", "RR_RefineLoopEnd", "RR_RepairLoopEnd")


def load(name: str) -> dict:
    return load_ui(name)


def box(node: dict) -> tuple[float, float, float, float]:
    (x, y), (w, h) = node["pos"], node["size"]
    return x, y - TITLE_BAR, x + w, y + h


def inside(inner, outer) -> bool:
    return outer[0] <= inner[0] and outer[1] <= inner[1] and inner[2] <= outer[2] and inner[3] <= outer[3]


def overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def test_the_starter_and_every_earlier_workflow_ship():
    assert "critique_my_image" in NAMES and len(NAMES) >= 6


def test_each_template_has_a_title_and_a_thumbnail_and_the_starter_comes_first():
    """ComfyUI's Templates browser titles a pack's template by its file name and shows <name>.jpg beside it."""
    files = sorted(p.stem for p in WORKFLOWS.glob("*.json"))
    assert files == sorted(ui_file(n) for n in NAMES) and sorted(LAYOUTS) == NAMES
    assert files[0] == ui_file("critique_my_image") and "start here" in files[0]
    for stem in files:
        assert "_" not in stem and stem[0].isdigit(), stem       # a human title, numbered for the order
        thumb = WORKFLOWS / f"{stem}.jpg"
        assert thumb.is_file(), f"no thumbnail {thumb.name}"
        from PIL import Image
        with Image.open(thumb) as im:
            assert im.format == "JPEG" and im.width >= 320 and im.height >= 200 and thumb.stat().st_size < 200_000


@pytest.mark.parametrize("name", NAMES)
def test_every_critic_caps_images_as_trained(name):
    """-1: the size the checkpoints were trained on (a 24-megapixel photo is scaled down, never sent whole)."""
    critics = [n for n in load_twin(name).values() if n["class_type"] in ("RR_LoadCritic", "RR_ServerCritic")]
    assert critics and all(n["inputs"]["max_pixels"] == -1 for n in critics), name
    assert (TWINS / f"{name}.api.json").is_file()


@pytest.mark.parametrize("name", NAMES)
def test_each_workflow_has_notes_and_groups_around_every_node(name):
    wf = load(name)
    notes = [n for n in wf["nodes"] if n["type"] in NOTE_TYPES]
    nodes = [n for n in wf["nodes"] if n["type"] not in NOTE_TYPES]
    assert notes, f"{name}: no Note node"
    assert all(isinstance(n["widgets_values"][0], str) and len(n["widgets_values"][0]) > 40 for n in notes)
    assert wf["groups"], f"{name}: no group"
    groups = [(g["title"], (g["bounding"][0], g["bounding"][1], g["bounding"][0] + g["bounding"][2],
                            g["bounding"][1] + g["bounding"][3])) for g in wf["groups"]]
    for n in nodes:
        assert any(inside(box(n), g) for _, g in groups), f"{name}: node {n['id']} ({n['type']}) is in no group"
    for title, g in groups:   # each group explains itself: a note inside it
        assert any(inside(box(n), g) for n in notes), f"{name}: group {title!r} has no note"
    for i, (ta, a) in enumerate(groups):
        for tb, b in groups[i + 1:]:
            assert not overlap(a, b), f"{name}: groups {ta!r} and {tb!r} overlap"


@pytest.mark.parametrize("name", NAMES)
def test_the_layout_is_hand_arranged_and_readable(name):
    wf = load(name)
    boxes = [(n["id"], box(n)) for n in wf["nodes"]]
    for i, (ia, a) in enumerate(boxes):
        for ib, b in boxes[i + 1:]:
            assert not overlap(a, b), f"{name}: nodes {ia} and {ib} overlap"
    xs = [b[0] for _, b in boxes] + [b[2] for _, b in boxes]
    ys = [b[1] for _, b in boxes] + [b[3] for _, b in boxes]
    assert max(xs) - min(xs) <= 4200 and max(ys) - min(ys) <= 2200, f"{name}: canvas too spread out"
    rows: dict[float, int] = {}
    for n in wf["nodes"]:
        rows[n["pos"][1]] = rows.get(n["pos"][1], 0) + 1
    assert max(rows.values()) <= 10, f"{name}: {max(rows.values())} nodes in one row"
    # nothing sits below a node whose card grows downward after a run
    for n in wf["nodes"]:
        if n["type"] in CARD_NODES:
            x0, _, x1, y1 = box(n)
            below = [o["id"] for o in wf["nodes"] if o is not n and box(o)[1] >= y1 and box(o)[0] < x1
                     and box(o)[2] > x0]
            assert not below, f"{name}: {below} below the card of node {n['id']}"


@pytest.mark.parametrize("name", NAMES)
def test_no_text_preview_repeats_the_card(name):
    wf = load(name)
    types = {n["id"]: n["type"] for n in wf["nodes"]}
    for link_id, src, _slot, dst, _dslot, _type in wf["links"]:
        if types[dst] == "PreviewAny":
            assert types[src] not in CARD_NODES, f"{name}: PreviewAny {dst} repeats the card of node {src}"


def test_the_starter_critiques_an_image_you_have_without_a_generator():
    wf = load("critique_my_image")
    types = {n["type"] for n in wf["nodes"]} - set(NOTE_TYPES)
    assert types == {"LoadImage", "RR_LoadCritic", "RR_CritiqueImage"}
    by_id = {n["id"]: n["type"] for n in wf["nodes"]}
    wired = {(by_id[src], by_id[dst]) for _, src, _, dst, _, _ in wf["links"]}
    assert wired == {("LoadImage", "RR_CritiqueImage"), ("RR_LoadCritic", "RR_CritiqueImage")}


def test_the_edit_loop_says_where_the_editing_model_goes():
    wf = load("edit_refine_loop")
    text = " ".join(n["widgets_values"][0] for n in wf["nodes"] if n["type"] in NOTE_TYPES)
    assert "stand-in" in text and "Qwen-Image-Edit" in text and "Kontext" in text
    stand_in = next(g for g in wf["groups"] if "editing model" in g["title"])
    sampler = next(n for n in wf["nodes"] if n["type"] == "KSampler")
    b = stand_in["bounding"]
    assert inside(box(sampler), (b[0], b[1], b[0] + b[2], b[1] + b[3]))   # the note's group holds the stand-in


def test_download_commands_in_notes_exist_and_name_the_loader_folder():
    for name in NAMES:
        for n in load(name)["nodes"]:
            if n["type"] in NOTE_TYPES:
                text = n["widgets_values"][0]
                assert "huggingface-cli" not in text
                if "hf download TIGER-Lab/" in text:
                    assert "--local-dir ComfyUI/models/rationalrewards/RationalRewards-8B-" in text


def test_the_repair_loop_marks_the_inpainting_as_the_artists_to_swap():
    wf = load("repair_regions_loop")
    text = " ".join(n["widgets_values"][0] for n in wf["nodes"] if n["type"] in NOTE_TYPES)
    assert "InpaintModelConditioning" in text and "Fill" in text and "example" in text
    body = next(g for g in wf["groups"] if "your inpainting" in g["title"])
    b = body["bounding"]
    inpaint = [n for n in wf["nodes"] if n["type"] in ("SetLatentNoiseMask", "ImageCompositeMasked")
               or n.get("title") == "Inpaint"]
    assert len(inpaint) == 3 and all(inside(box(n), (b[0], b[1], b[0] + b[2], b[1] + b[3])) for n in inpaint)
    start = next(n for n in wf["nodes"] if n["type"] == "RR_RepairLoopStart")
    assert not inside(box(start), (b[0], b[1], b[0] + b[2], b[1] + b[3]))      # the loop nodes stay outside it
