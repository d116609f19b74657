"""The four shipped prompts have the layout the checkpoints were trained on, checked on what a server
receives (the OpenAI-compatible backend against the fake peer) and on what the in-process processor gets;
user template folders override the pack's files, broken ones fail naming the file; the default image size
follows the checkpoint's training.

The published structure (shared/design/critique-format.md): pointwise = a system message + one user
message; pairwise = one user message. In the user message: ``User Instruction: {request}``,
``You are provided with ...`` and the enumerated, captioned images in place, the rubric with its four named
levels per aspect, (pointwise) the Anchor / Justify-and-Adjust methodology and the refinement request, then
``Output your evaluation in the following format:`` and the answer skeleton with bracketed placeholders.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from PIL import Image

from rationalrewards.backends.base import GenerationOptions
from rationalrewards.backends.openai_server import OpenAIServerBackend
from rationalrewards.critic.critic import Critic, Item
from rationalrewards.judging.critique import ScoreStatus, Winner
from rationalrewards.runtime.loader import RR_TRAINED_MAX_PIXELS, load_critic, resolve_max_pixels
from rationalrewards.critic.prompting import TEMPLATE_DIR, TemplateError, check_templates, get_template
from rationalrewards.judging.rubric import Task
from rationalrewards.critic.script import AnswerScript
from tests.fixtures.fake_openai import FakeOpenAI
from tests.sent import assert_prompt_sent, from_chat_body, record_model_inputs
from tests.unit.rr_sample_answers import EDIT_FULL, EDIT_PAIR, T2I_FULL, T2I_PAIR_PUBLISHED

OPTS = GenerationOptions(max_new_tokens=64, temperature=0.1, seed=5)
PROMPT = "a red cat holding a sign that says HELLO"

CAPTIONS = {
    (Task.T2I, "pointwise"): ("You are provided with one image:", ["1. Generated Image "]),
    (Task.EDIT, "pointwise"): ("You are provided with two images:", ["1. Source Image ", "2. Edited Image "]),
    (Task.T2I, "pairwise"): ("You are provided with two images:",
                             ["1. Generated Image A ", "2. Generated Image B "]),
    (Task.EDIT, "pairwise"): ("You are provided with three images:",
                              ["1. Source Image ", "2. Edited Image A ", "3. Edited Image B "]),
}
LEVELS = {
    "Text Faithfulness": ["4 (Full match)", "3 (Minor mismatch)", "2 (Some mismatch)", "1 (Major deviations)"],
    "Image Faithfulness": ["4 (Uses input fully)", "3 (Minor mismatch)", "2 (Partial mismatch)",
                           "1 (Fails to use input)"],
    "Physical and Visual Quality": ["4 (No noticeable flaws)", "3 (Minor flaws)", "2 (Some flaws)",
                                    "1 (Severe flaws)"],
    "Text Rendering": ["4 (Full match)", "3 (Mostly match)", "2 (Partial match)", "1 (Major deviations)"],
}
TITLES = {Task.T2I: ["Text Faithfulness", "Physical and Visual Quality", "Text Rendering"],
          Task.EDIT: ["Text Faithfulness", "Image Faithfulness", "Physical and Visual Quality", "Text Rendering"]}
ANSWERS = {(Task.T2I, "pointwise"): T2I_FULL, (Task.EDIT, "pointwise"): EDIT_FULL,
           (Task.T2I, "pairwise"): T2I_PAIR_PUBLISHED, (Task.EDIT, "pairwise"): EDIT_PAIR}
CASES = list(CAPTIONS)


def colour(i: int, size=(40, 32)) -> Image.Image:
    return Image.new("RGB", size, [(200, 20, 20), (20, 200, 20), (20, 20, 200)][i])


def skeleton(task: Task, mode: str) -> list[str]:
    """The answer skeleton's lines, exactly as published."""
    lines = ["# User Request Analysis", "# Detailed Judgement"]
    for n, title in enumerate(TITLES[task], 1):
        na = title == "Text Rendering"
        if mode == "pointwise":
            lines += [f"{n}. {title}:", "## Justification: [", "## Score: [ float score or N/A ]" if na
                      else "## Score: [ float score ]"]
        else:
            lines += [f"{n}. {title}:", "## Justification: [analysis]",
                      f"## Score A: [float{' or N/A' if na else ''}]", f"## Score B: [float{' or N/A' if na else ''}]",
                      "## Winner: [N/A or Image A or Image B or It's a tie]" if na
                      else "## Winner: [Image A or Image B or It's a tie]"]
    lines.append("# Summary: [")
    if mode == "pointwise":
        lines += ["# User Request Refinement:", "## Refinement Comments: [", "## Refined Request: ["]
    return lines


def assert_in_order(text: str, needles: list[str]) -> None:
    at = 0
    for needle in needles:
        found = text.find(needle, at)
        assert found >= 0, f"{needle!r} missing (or out of order) after position {at}"
        at = found + len(needle)


def assert_published_structure(task: Task, mode: str, system: str | None, parts: list[tuple[str, str]]) -> None:
    """``parts``: the user message as (kind, text) with kind 'text' or 'image' in sent order."""
    if mode == "pointwise":
        assert system and "expert" in system and "refine" in system        # evaluate, then suggest a refinement
    else:
        assert system is None                                                # the authors' pairwise: no system
    intro, captions = CAPTIONS[(task, mode)]
    kinds = [k for k, _ in parts]
    assert kinds == ["text", "image"] * len(captions) + ["text"]           # images in place, text around them
    texts = [t for k, t in parts if k == "text"]
    first = texts[0]
    instruction = f"User Instruction: {PROMPT}\n{intro}\n{captions[0]}"
    assert first.endswith(instruction)                                      # the caption sits right before image 1
    if mode == "pointwise":
        assert first == instruction                                         # pointwise: the message opens with it
    for caption, text in zip(captions[1:], texts[1:]):
        assert text == "\n" + caption
    rest = texts[-1]
    methodology = ["### Scoring Methodology (CRITICAL)", "1. **Anchor:**", "2. **Justify and Adjust:**",
                   "*Example:*"] if mode == "pointwise" else []
    rubric = ["### Critical Aspects & Scoring Rubric"]
    for n, title in enumerate(TITLES[task], 1):
        rubric += [f"**{n}. {title}**"] + [f"- **{level}:**" for level in LEVELS[title]]
    assert_in_order(rest, rubric + methodology + ["Output your evaluation in the following format:\n"]
                    + skeleton(task, mode))
    if mode == "pointwise":
        refinement = rest[rest.index("2. **Justify and Adjust:**"):rest.index("Output your evaluation")]
        assert "refined user request" in refinement and "weakness" in refinement
    assert rest.rstrip().endswith("]")                                      # the skeleton closes the message


def item(task: Task, mode: str) -> Item:
    n = len(CAPTIONS[(task, mode)][1])
    return Item(task, mode, PROMPT, tuple(colour(i) for i in range(n)))


# --- what a server receives -----------------------------------------------------------------------------

@pytest.mark.parametrize("task, mode", CASES)
def test_server_receives_the_published_layout(task, mode):
    with FakeOpenAI(answer=ANSWERS[(task, mode)]) as peer:
        critic = Critic(backend=OpenAIServerBackend(peer.url, "critic", timeout_s=10, backoff_s=0.01))
        it = item(task, mode)
        if mode == "pointwise":
            [result] = critic.critique([it.images[-1]], PROMPT, OPTS,
                                       sources=[it.images[0]] if task is Task.EDIT else None)
            assert all(d.status is not ScoreStatus.MISSING for d in result.dimensions.values())
        else:
            result = critic.compare(it.images[-2], it.images[-1], PROMPT, OPTS,
                                    source=it.images[0] if task is Task.EDIT else None)
            assert result.winner is Winner.B
        [sent] = peer.chat_requests()
    body = sent.body
    assert_prompt_sent(from_chat_body(body), critic.build(it), PROMPT)   # exactly the rendered template
    roles = [m["role"] for m in body["messages"]]
    assert roles == (["system", "user"] if mode == "pointwise" else ["user"])
    system = body["messages"][0]["content"] if mode == "pointwise" else None
    parts = [("image", p["image_url"]["url"]) if p["type"] == "image_url" else ("text", p["text"])
             for p in body["messages"][-1]["content"]]
    assert all(url.startswith("data:image/png;base64,") for k, url in parts if k == "image")
    assert_published_structure(task, mode, system, parts)
    # every sampling parameter explicit: the server's generation_config defaults never apply
    assert {k: body[k] for k in ("temperature", "top_p", "top_k", "repetition_penalty", "seed", "max_tokens")} \
        == {"temperature": 0.1, "top_p": 1.0, "top_k": -1, "repetition_penalty": 1.0, "seed": 5, "max_tokens": 64}
    assert result.record["template"]["name"] == f"{task.value}_{mode}"
    assert result.record["template"]["source"] == "built-in"
    assert re.fullmatch(r"[0-9a-f]{12}", result.record["template"]["hash"])
    data = result.to_dict()
    assert (data["template"], data["template_hash"], data["template_source"]) == (
        f"{task.value}_{mode}", result.record["template"]["hash"], "built-in")


def test_explicit_sampling_values_reach_the_server():
    opts = GenerationOptions(max_new_tokens=32, temperature=0.7, top_p=0.9, top_k=40, repetition_penalty=1.05,
                             seed=11)
    with FakeOpenAI(answer=T2I_FULL) as peer:
        Critic(backend=OpenAIServerBackend(peer.url, "critic", timeout_s=10)).critique([colour(0)], PROMPT, opts)
        body = peer.chat_requests()[0].body
    assert (body["temperature"], body["top_p"], body["top_k"], body["repetition_penalty"], body["seed"]) == \
        (0.7, 0.9, 40, 1.05, 11)


def test_a_server_that_refuses_top_k_gets_the_request_without_it(caplog):
    """`transformers serve` answers 422 for fields outside the OpenAI schema: resend without them, once, and say so."""
    def strict_peer(body):
        from tests.fixtures.fake_openai import Reply, completion
        extra = sorted({"top_k", "repetition_penalty"} & set(body))
        if extra:
            return Reply(422, {"error": {"message": f"Unexpected fields in the request: {set(extra)}"}})
        return Reply(body=completion(T2I_FULL))
    with FakeOpenAI(answer=T2I_FULL) as peer:
        peer.script = [strict_peer, strict_peer, strict_peer]
        backend = OpenAIServerBackend(peer.url, "critic", timeout_s=10)
        critic = Critic(backend=backend)
        with caplog.at_level("WARNING"):
            critic.critique([colour(0)], PROMPT, OPTS)
            critic.critique([colour(0)], PROMPT, OPTS)
        sent = [r.body for r in peer.chat_requests()]
    assert len(sent) == 3                       # refused once, then never sent again
    assert "top_k" in sent[0] and "top_k" not in sent[1] and "repetition_penalty" not in sent[2]
    assert sent[1]["temperature"] == 0.1 and sent[1]["top_p"] == 1.0
    assert sum("refuses" in r.getMessage() for r in caplog.records) == 1


# --- what the in-process processor receives ---------------------------------------------------------------

@pytest.mark.parametrize("task, mode", CASES)
def test_processor_receives_the_published_layout(qwen3_critic, task, mode):
    """The token ids the in-process model gets, decoded with the checkpoint's tokenizer (tests/sent.py)."""
    critic = qwen3_critic.with_script(AnswerScript.from_json('"x"'))
    it = item(task, mode)
    opts = GenerationOptions(max_new_tokens=2, temperature=0)
    with record_model_inputs(critic.backend) as seen:
        if mode == "pointwise":
            critic.critique([it.images[-1]], PROMPT, opts, sources=[it.images[0]] if task is Task.EDIT else None)
        else:
            critic.compare(it.images[-2], it.images[-1], PROMPT, opts,
                           source=it.images[0] if task is Task.EDIT else None)
    [sent] = seen
    assert [m.role for m in sent.messages] == (["system", "user"] if mode == "pointwise" else ["user"])
    assert sent.generation_prompt
    assert_prompt_sent(sent, critic.build(it), PROMPT)
    parts = [(kind, value or "") for kind, value in sent.user.parts]
    assert_published_structure(task, mode, sent.system, parts)
    assert all(n > 0 for n in sent.user.image_tokens) and len(sent.user.image_tokens) == len(CAPTIONS[(task, mode)][1])


# --- user templates -------------------------------------------------------------------------------------------

MINE = "[system]\nMY SYSTEM\n[user]\nMine: {request}\n1. Generated Image <image>\nanswer please"


def test_user_folder_overrides_a_builtin_and_is_recorded(tmp_path):
    (tmp_path / "t2i_pointwise.txt").write_text(MINE, encoding="utf-8")
    with FakeOpenAI(answer=T2I_FULL) as peer:
        critic = Critic(backend=OpenAIServerBackend(peer.url, "critic", timeout_s=10), template_dir=[tmp_path])
        [c] = critic.critique([colour(0)], PROMPT, OPTS)
        body = peer.chat_requests()[0].body
    assert body["messages"][0] == {"role": "system", "content": "MY SYSTEM"}
    assert [p.get("text") for p in body["messages"][1]["content"]] == [
        f"Mine: {PROMPT}\n1. Generated Image ", None, "\nanswer please"]
    assert c.record["template"]["source"] == str(tmp_path / "t2i_pointwise.txt")
    assert c.record["template"]["hash"] != get_template("t2i_pointwise").digest
    assert "Template: t2i_pointwise (" + str(tmp_path / "t2i_pointwise.txt") in c.report()
    # names the folder does not have come from the pack
    assert get_template("edit_pointwise", [tmp_path]).path == str(TEMPLATE_DIR / "edit_pointwise.txt")


def test_first_folder_wins(tmp_path):
    first, second = tmp_path / "ckpt", tmp_path / "user"
    first.mkdir()
    second.mkdir()
    (first / "t2i_pairwise.txt").write_text("A {request} <image> <image>", encoding="utf-8")
    (second / "t2i_pairwise.txt").write_text("B {request} <image> <image>", encoding="utf-8")
    assert get_template("t2i_pairwise", [first, second]).user.startswith("A ")
    assert get_template("t2i_pairwise", [second, first]).user.startswith("B ")
    assert get_template("t2i_pairwise", [tmp_path / "nowhere", second]).user.startswith("B ")


@pytest.mark.parametrize("name, text, fragment", [
    ("t2i_pointwise", "judge <image>", "has no {request}"),
    ("t2i_pointwise", "judge {request}", "has 0 <image> markers but t2i_pointwise places 1 image"),
    ("edit_pairwise", "{request} <image> <image>", "has 2 <image> markers but edit_pairwise places 3 images"),
    ("edit_pointwise", "[user]\n{request} <image> <image>\n[system]\nx", "[system] must come before [user]"),
    ("t2i_pointwise", "[system]\nonly a system part {request} <image>", "no [user] section"),
    ("t2i_pointwise", "[system]\nsee <image>\n[user]\n{request} <image>", "belong in the [user] section"),
    ("t2i_pointwise", "[user]\n{request} <image>\n[user]\nagain", "appears twice"),
    ("t2i_pointwise", "stray\n[user]\n{request} <image>", "text before the first"),
])
def test_broken_user_template_names_the_file(tmp_path, name, text, fragment):
    path = tmp_path / f"{name}.txt"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(TemplateError) as err:
        get_template(name, [tmp_path])
    assert str(path) in str(err.value) and fragment in str(err.value)
    with pytest.raises(TemplateError, match=re.escape(str(path))):
        check_templates([tmp_path])


def test_not_utf8_template_names_the_file(tmp_path):
    path = tmp_path / "t2i_pointwise.txt"
    path.write_bytes(b"\xff\xfe{request} <image>")
    with pytest.raises(TemplateError, match=re.escape(str(path)) + ".*UTF-8"):
        get_template("t2i_pointwise", [tmp_path])


def test_shipped_templates_pass_the_checks():
    assert check_templates([TEMPLATE_DIR]) and all(t.builtin for t in check_templates([TEMPLATE_DIR]))


def _rr_checkpoint(tmp_path: Path, tiny_models_dir: Path, name: str) -> Path:
    """A checkpoint folder named like a RationalRewards one, holding the tiny critic's files."""
    folder = tmp_path / name
    folder.mkdir()
    for f in (tiny_models_dir / "tiny-qwen3vl").iterdir():
        (folder / f.name).symlink_to(f)
    return folder


def test_checkpoint_templates_folder_is_read_first_and_broken_ones_fail_at_load(tmp_path, tiny_models_dir):
    folder = _rr_checkpoint(tmp_path, tiny_models_dir, "RationalRewards-8B-T2I")
    (folder / "templates").mkdir()
    (folder / "templates" / "t2i_pointwise.txt").write_text("[user]\nCKPT {request} <image>", encoding="utf-8")
    user = tmp_path / "user_templates"
    user.mkdir()
    (user / "t2i_pointwise.txt").write_text("USER {request} <image>", encoding="utf-8")
    (user / "t2i_pairwise.txt").write_text("USER {request} <image> <image>", encoding="utf-8")
    critic = load_critic(str(folder), [tmp_path], template_dirs=[user])
    assert critic.build(item(Task.T2I, "pointwise")).text.startswith("CKPT ")
    assert critic.build(item(Task.T2I, "pairwise")).text.startswith("USER ")
    (user / "edit_pointwise.txt").write_text("no request here <image> <image>", encoding="utf-8")
    with pytest.raises(TemplateError, match=re.escape(str(user / "edit_pointwise.txt"))):
        load_critic(str(folder), [tmp_path], template_dirs=[user])


# --- image size -------------------------------------------------------------------------------------------------

def test_rr_checkpoint_default_image_size_is_the_trained_one(tmp_path, tiny_models_dir, monkeypatch):
    folder = _rr_checkpoint(tmp_path, tiny_models_dir, "RationalRewards-8B-T2I")
    critic = load_critic(str(folder), [tmp_path])
    assert critic.max_pixels == RR_TRAINED_MAX_PIXELS == 802_816
    sizes = []
    real = critic.backend.encode
    monkeypatch.setattr(critic.backend, "encode", lambda reqs: sizes.append([i.size for r in reqs for i in r.images])
                        or real(reqs))
    scripted = critic.with_script(AnswerScript.from_json('"x"'))
    [c] = scripted.critique([Image.new("RGB", (4096, 4096), (90, 90, 90))], PROMPT,
                            GenerationOptions(max_new_tokens=2, temperature=0))
    [[(w, h)]] = sizes
    assert w * h <= 802_816 and (w, h) == (896, 896)
    assert c.record["image_size"] == {"max_pixels": 802_816, "source": "the checkpoint's training size"}
    assert "Image size: up to 802,816 px (the checkpoint's training size)" in c.report()


def test_explicit_and_zero_image_sizes_are_honoured(tmp_path, tiny_models_dir):
    folder = _rr_checkpoint(tmp_path, tiny_models_dir, "RationalRewards-8B-Edit")
    assert load_critic(str(folder), [tmp_path], max_pixels=65_536).max_pixels == 65_536
    zero = load_critic(str(folder), [tmp_path], max_pixels=0)
    assert zero.max_pixels is None and "processor decides" in zero.image_size()["source"]


def test_image_size_rule():
    assert resolve_max_pixels(-1, "TIGER-Lab/RationalRewards-8B-T2I")[0] == 802_816
    assert resolve_max_pixels(-1, "rationalrewards-t2i")[0] == 802_816          # a vLLM served-model-name
    assert resolve_max_pixels(-1, "rational_rewards_edit")[0] == 802_816
    assert resolve_max_pixels(-1, "Qwen/Qwen3-VL-8B-Instruct") == (
        None, "the processor's own limit (not a RationalRewards checkpoint)")
    assert resolve_max_pixels(0, "TIGER-Lab/RationalRewards-8B-T2I")[0] is None
    assert resolve_max_pixels(None, "TIGER-Lab/RationalRewards-8B-T2I")[0] is None
    assert resolve_max_pixels(1_000_000, "Qwen/Qwen3-VL-8B-Instruct") == (1_000_000, "set by the user")


def test_config_name_marks_a_rationalrewards_checkpoint(tmp_path):
    folder = tmp_path / "my-critic"
    folder.mkdir()
    (folder / "config.json").write_text('{"_name_or_path": "TIGER-Lab/RationalRewards-8B-Edit"}', encoding="utf-8")
    assert resolve_max_pixels(-1, "my-critic", folder)[0] == 802_816
    (folder / "config.json").write_text('{"_name_or_path": "Qwen/Qwen3-VL-8B-Instruct"}', encoding="utf-8")
    assert resolve_max_pixels(-1, "my-critic", folder)[0] is None
