"""Shipped templates, rendering, and their agreement with the parser."""
from __future__ import annotations

import re

import pytest
from PIL import Image

from rationalrewards.judging.critique import ScoreStatus, Winner
from rationalrewards.judging.parser import parse_critique, parse_pairwise
from rationalrewards.critic.prompting import (IMAGE_MARKER, REQUEST_FIELD, TEMPLATE_DIR, ChatRequest, load_template,
                                       render, template_name)
from rationalrewards.judging.rubric import Task, dimensions_for

MARKERS = {"t2i_pointwise": 1, "edit_pointwise": 2, "t2i_pairwise": 2, "edit_pairwise": 3}
CASES = [(Task.T2I, "pointwise"), (Task.EDIT, "pointwise"), (Task.T2I, "pairwise"), (Task.EDIT, "pairwise")]


def img(color=(255, 0, 0), size=(32, 32)) -> Image.Image:
    return Image.new("RGB", size, color)


FORMAT_LINE = "Output your evaluation in the following format:"


def answer_block(template: str) -> str:
    assert template.count(FORMAT_LINE) == 1
    return template.split(FORMAT_LINE, 1)[1]


def fill_placeholders(block: str) -> tuple[str, list[float]]:
    """Replace each [...] placeholder: scores with distinct numbers, winners with a verdict, text with words."""
    numbers: list[float] = []

    def repl(m: re.Match) -> str:
        inside = m.group(1)
        if "float" in inside:
            numbers.append(1.0 + (len(numbers) % 7) * 0.5)
            return f"{numbers[-1]:g}"
        if "Image A" in inside:
            return "Image B"
        return "some words here"
    return re.sub(r"\[([^\[\]\n]+)\]", repl, block), numbers


def test_template_names():
    assert template_name("t2i", "pointwise") == "t2i_pointwise"
    assert template_name(Task.EDIT, "pairwise") == "edit_pairwise"
    with pytest.raises(ValueError):
        template_name(Task.T2I, "listwise")
    with pytest.raises(ValueError):
        template_name("video", "pointwise")


@pytest.mark.parametrize("name, markers", sorted(MARKERS.items()))
def test_template_has_request_and_markers(name, markers):
    t = load_template(name)
    assert (TEMPLATE_DIR / f"{name}.txt").is_file()
    assert t.count(REQUEST_FIELD) == 1
    assert t.count(IMAGE_MARKER) == markers
    # no other {placeholders} that a str.format-style user edit might expect us to fill
    assert re.findall(r"\{[a-z_]+\}", t) == [REQUEST_FIELD]


@pytest.mark.parametrize("task, mode", CASES)
def test_template_dimension_titles_in_parser_order(task, mode):
    t = load_template(template_name(task, mode))
    block = answer_block(t)
    titles = re.findall(r"^\d\. ([A-Za-z ]+):", block, flags=re.M)
    assert titles == [d.title for d in dimensions_for(task)]
    # the rubric above the answer format uses the same titles, in the same order, as bold numbered headings
    rubric = t.split(FORMAT_LINE)[0]
    assert re.findall(r"^\*\*\d\. ([A-Za-z ]+)\*\*", rubric, flags=re.M) == titles


@pytest.mark.parametrize("task", [Task.T2I, Task.EDIT])
def test_pointwise_template_format_block_parses(task):
    block, numbers = fill_placeholders(answer_block(load_template(template_name(task, "pointwise"))))
    c = parse_critique(block, task)
    assert c.warnings == []
    assert list(c.dimensions) == [d.key for d in dimensions_for(task)]
    assert [d.value for d in c.dimensions.values()] == numbers
    assert all(d.status is ScoreStatus.OK for d in c.dimensions.values())
    assert all(d.justification == "some words here" for d in c.dimensions.values())
    assert c.request_analysis == "some words here"
    assert c.summary == "some words here"
    assert c.refinement_comments == "some words here"
    assert c.refined_request == "some words here"


@pytest.mark.parametrize("task", [Task.T2I, Task.EDIT])
def test_pairwise_template_format_block_parses(task):
    block, numbers = fill_placeholders(answer_block(load_template(template_name(task, "pairwise"))))
    p = parse_pairwise(block, task)
    assert p.warnings == []
    assert list(p.dimensions) == [d.key for d in dimensions_for(task)]
    got = [v for d in p.dimensions.values() for v in (d.a.value, d.b.value)]
    assert got == numbers
    assert all(d.stated_winner is Winner.B for d in p.dimensions.values())
    assert p.summary == "some words here"


@pytest.mark.parametrize("task", [Task.T2I, Task.EDIT])
def test_templates_na_placeholder_is_on_text_rendering_only(task):
    block = answer_block(load_template(template_name(task, "pointwise")))
    c = parse_critique(block.replace("[ float score or N/A ]", "N/A").replace("[ float score ]", "3"), task)
    assert c.warnings == []
    assert c.dimensions["text_rendering"].status is ScoreStatus.NA
    assert all(d.status is ScoreStatus.OK for k, d in c.dimensions.items() if k != "text_rendering")


def test_template_dir_override_wins(tmp_path):
    (tmp_path / "t2i_pointwise.txt").write_text("CUSTOM <image> judge: {request}", encoding="utf-8")
    assert load_template("t2i_pointwise", tmp_path) == "CUSTOM <image> judge: {request}"
    assert load_template("t2i_pointwise", str(tmp_path)) == "CUSTOM <image> judge: {request}"
    # names without an override fall back to the shipped file
    assert load_template("edit_pointwise", tmp_path) == (TEMPLATE_DIR / "edit_pointwise.txt").read_text("utf-8")
    assert load_template("t2i_pointwise", None) == (TEMPLATE_DIR / "t2i_pointwise.txt").read_text("utf-8")


def test_unknown_template_raises(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_template("nope_pointwise", tmp_path)


def test_override_through_critic(tmp_path):
    from rationalrewards.critic.critic import Critic, Item
    (tmp_path / "t2i_pointwise.txt").write_text("MINE {request}\n<image>", encoding="utf-8")
    from rationalrewards.backends.openai_server import OpenAIServerBackend
    critic = Critic(backend=OpenAIServerBackend("http://127.0.0.1:9", "critic"), template_dir=tmp_path)
    req = critic.build(Item(Task.T2I, "pointwise", "a cat", (img(),)))
    assert req.text == "MINE a cat\n"
    assert len(req.images) == 1


@pytest.mark.parametrize("request_text", ["a {x} cat", "(word:1.2), [from:to:0.5], {a|b}", "{request}",
                                          "literal <image> marker", "ünïcödé 猫 \\n \"quoted\"", "{0} {} %s"])
def test_braces_and_specials_kept_verbatim(request_text):
    t = load_template("t2i_pointwise")
    req = render(t, request_text, [img()])
    assert isinstance(req, ChatRequest)
    assert req.text.count(request_text) == 1
    assert f"User Instruction: {request_text}\n" in req.text
    assert len(req.images) == 1


def test_render_puts_images_at_markers():
    a, b, s = img((255, 0, 0)), img((0, 255, 0)), img((0, 0, 255))
    req = render(load_template("edit_pairwise"), "make it blue", [s, a, b])
    kinds = [k for k, _ in req.parts]
    assert kinds == ["text", "image", "text", "image", "text", "image", "text"]
    assert req.parts[0][1].endswith("You are provided with three images:\n1. Source Image ")
    assert req.parts[2] == ("text", "\n2. Edited Image A ")
    assert req.parts[4] == ("text", "\n3. Edited Image B ")
    assert req.images == [s, a, b]
    assert req.images[0] is s
    assert req.system is None          # the authors' pairwise prompt has no system message


def test_render_marker_first_has_no_empty_text_part():
    req = render("<image>{request}", "x", [img()])
    assert [k for k, _ in req.parts] == ["image", "text"]


@pytest.mark.parametrize("name, n_images", [("t2i_pointwise", 0), ("t2i_pointwise", 2), ("edit_pointwise", 1),
                                             ("edit_pairwise", 2), ("t2i_pairwise", 3)])
def test_marker_image_count_mismatch(name, n_images):
    with pytest.raises(ValueError, match="image markers"):
        render(load_template(name), "a cat", [img()] * n_images)
