"""Defect phrases: cleaning, typed phrases, the critic's follow-up (template, parser, scripted run through the
tiny critic's real decoding) and the no-model extraction from justifications."""
from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from PIL import Image

from rationalrewards.backends.base import GenerationOptions
from rationalrewards.backends.openai_server import OpenAIServerBackend
from rationalrewards.critic.critic import FOLLOWUP_TEMPLATES, Critic
from rationalrewards.grounding.followup import ask_regions, followup_item
from rationalrewards.grounding.phrases import (clean_phrase, critique_digest, dimension_key, parse_region_answer,
                                               phrases_from_critique, rank_phrases, severity_from_score,
                                               split_phrases, worst_score, DefectPhrase)
from rationalrewards.judging.parser import parse_critique
from rationalrewards.critic.prompting import load_template
from rationalrewards.judging.rubric import Task
from rationalrewards.critic.script import AnswerScript
from tests.unit.rr_sample_answers import EDIT_FULL, T2I_FULL

T2I_REQUEST = 'a red cat holding a sign that says "HELLO" in a sunny garden'


def physical(justification: str, score: float = 2.0):
    return parse_critique("1. Text Faithfulness:\n## Justification: fine\n## Score: 4\n"
                          f"2. Physical and Visual Quality:\n## Justification: {justification}\n## Score: {score}\n"
                          "3. Text Rendering:\n## Justification: no text requested\n## Score: N/A")


# --- cleaning and typed phrases --------------------------------------------------------------------------

@pytest.mark.parametrize("raw, expected", [
    ("Left Hand", "left hand"),
    ("  the car’s rear-wheel!! ", "car's rear-wheel"),
    ('"sign text".', "sign text"),
    ("a b c d e f g h i j", "b c d e f g h i"),      # article dropped, then at most 8 words
    ("!!!", None), ("   ", None), ("123", None), ("the image", None), ("None", None),
])
def test_clean_phrase(raw, expected):
    assert clean_phrase(raw) == expected


def test_split_phrases_accepts_lines_commas_semicolons_and_caption_form():
    got = [p.text for p in split_phrases("left hand, sign text.\n\n car's rear wheel ; !!! \n LEFT HAND\nface . eye .")]
    assert got == ["left hand", "sign text", "car's rear wheel", "face", "eye"]
    assert split_phrases("") == [] and split_phrases(" ;,.\n!? ") == []
    assert all(p.source == "user" for p in split_phrases("a hand"))


def test_severity_scale_matches_the_rubric():
    assert [severity_from_score(s) for s in (4, 3, 2.5, 2, 1.5, 1)] == \
        ["minor", "minor", "clear", "clear", "severe", "severe"]
    assert severity_from_score(None) == "clear" and severity_from_score(float("nan")) == "clear"


def test_rank_phrases_puts_severe_first_and_keeps_order_within_a_level():
    ps = [DefectPhrase("a", severity="minor"), DefectPhrase("b", severity="severe", score=1.5),
          DefectPhrase("c", severity="clear"), DefectPhrase("d", severity="severe", score=1.0)]
    assert [p.text for p in rank_phrases(ps)] == ["d", "b", "c", "a"]
    assert [p.text for p in rank_phrases(ps, 2)] == ["d", "b"]


@pytest.mark.parametrize("text, key", [
    ("Physical and Visual Quality", "physical_quality"), ("physical quality", "physical_quality"),
    ("**Text Rendering**", "text_rendering"), ("spelling", "text_rendering"), ("Image Faithfulness", "image_faithfulness"),
    ("text faithfulness", "text_faithfulness"), ("anatomy", "physical_quality"), ("colour", None), ("", None),
])
def test_dimension_names_are_matched_loosely(text, key):
    assert dimension_key(text) == key


# --- the follow-up answer parser -------------------------------------------------------------------------

def test_region_lines_in_the_strict_format():
    crit = parse_critique(T2I_FULL)
    r = parse_region_answer("REGION: left paw | Physical and Visual Quality | severe\n"
                            "REGION: sign text | Text Rendering | clear\n", crit)
    assert [(p.text, p.dimension, p.severity, p.source) for p in r.phrases] == [
        ("left paw", "physical_quality", "severe", "critic"), ("sign text", "text_rendering", "clear", "critic")]
    assert r.phrases[0].score == 2.5 and r.phrases[1].score == 2.0   # scores looked up in the critique
    assert not r.warnings and not r.nothing_to_fix


def test_region_lines_tolerate_bullets_bold_quotes_missing_fields_and_prose():
    crit = parse_critique(T2I_FULL)
    answer = ("Sure! The regions are:\n"
              "- **Region**: \"the sign's text\" | text rendering | 2\n"
              "3. REGION: car’s rear wheel | physical quality\n"
              "REGION 4: Left Paw\n"
              "REGION: !!! | x | y\n"
              "REGION: left paw | Physical | minor\n"           # duplicate: first kept
              "* blurry shadow | Physical and Visual Quality | moderate\n")
    r = parse_region_answer(answer, crit)
    got = {p.text: (p.dimension, p.severity) for p in r.phrases}
    assert got == {"sign's text": ("text_rendering", "clear"), "car's rear wheel": ("physical_quality", "clear"),
                   "left paw": (None, "clear"), "blurry shadow": ("physical_quality", "clear")}
    assert any("!!!" in w for w in r.warnings)


def test_region_none_means_nothing_to_fix_and_garbage_is_flagged():
    none = parse_region_answer("REGION: none")
    assert none.phrases == [] and none.nothing_to_fix and not none.warnings
    assert parse_region_answer("**REGION:** None.").nothing_to_fix
    junk = parse_region_answer("I think the hand looks odd.")
    assert junk.phrases == [] and not junk.nothing_to_fix and "REGION" in junk.warnings[0]
    both = parse_region_answer("REGION: none\nREGION: hand | physical | severe")
    assert [p.text for p in both.phrases] == ["hand"] and not both.nothing_to_fix


def test_region_answer_ranked_and_capped():
    r = parse_region_answer("REGION: a hand | physical | minor\nREGION: face | physical | severe\n"
                            "REGION: sign | text rendering | clear", max_regions=2)
    assert [p.text for p in r.phrases] == ["face", "sign"]


_LINES = st.lists(st.one_of(
    st.text(max_size=60),
    st.builds(lambda p, d, v: f"REGION: {p} | {d} | {v}", st.text(max_size=30),
              st.sampled_from(["Physical and Visual Quality", "text rendering", "??", ""]),
              st.sampled_from(["severe", "minor", "2.5", "", "very bad"]))), max_size=8)


@settings(max_examples=150, deadline=None)
@given(_LINES)
def test_any_answer_parses_into_clean_short_unique_phrases(lines):
    r = parse_region_answer("\n".join(lines), parse_critique(T2I_FULL), max_regions=4)
    texts = [p.text for p in r.phrases]
    assert len(texts) == len(set(texts)) <= 4
    for p in r.phrases:
        assert clean_phrase(p.text) == p.text and len(p.text.split()) <= 8
        assert p.severity in ("minor", "clear", "severe") and p.source == "critic"
    assert r.phrases or r.nothing_to_fix or r.warnings           # an empty result always says why


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=200))
@example("A-:0")          # once cleaned to "a 0", which a second clean turned into nothing
def test_typed_text_never_yields_empty_or_dirty_phrases(text):
    for p in split_phrases(text):
        assert p.text and clean_phrase(p.text) == p.text and not any(c in p.text for c in ",;\n")


# --- extraction from justifications ----------------------------------------------------------------------

def test_phrases_from_the_sample_t2i_critique():
    r = phrases_from_critique(parse_critique(T2I_FULL), T2I_REQUEST)
    got = [(p.text, p.dimension) for p in r.phrases]
    # Text Faithfulness scored 3.5 (not below 3.5): left alone; the text region borrows "sign" from the request
    assert got == [("sign text", "text_rendering"), ("left paw", "physical_quality"), ("shadow", "physical_quality")]
    assert all(p.source == "justification" and p.severity == "clear" for p in r.phrases)


def test_phrases_from_the_sample_edit_critique():
    r = phrases_from_critique(parse_critique(EDIT_FULL, "edit"))
    assert [(p.text, p.dimension) for p in r.phrases] == [("house", "image_faithfulness")]
    assert phrases_from_critique(parse_critique(EDIT_FULL, "edit"), score_below=4.01).phrases[0].text == "house"


@pytest.mark.parametrize("justification, expected", [
    ("The woman's left hand has six fingers and her face is slightly distorted.", ["woman's left hand", "face"]),
    ("The car's rear wheel is warped, and the reflection in the window is missing.", ["car's rear wheel", "reflection"]),
    ("There is an extra finger on the right hand; the background trees are blurry.", ["finger", "right hand"]),
    ("Anatomy is mostly fine but the dog's tail merges into the fence.", ["dog's tail", "fence"]),
    ("The image is well composed with good lighting.", []),
])
def test_phrases_from_justifications(justification, expected):
    r = phrases_from_critique(physical(justification))
    assert [p.text for p in r.phrases] == expected
    assert bool(r.warnings) == (not expected)


def test_no_phrases_when_scores_are_high_or_unreadable():
    assert phrases_from_critique(physical("The left hand has six fingers.", score=3.5)).phrases == []
    garbage = parse_critique("lorem ipsum")
    assert worst_score(garbage) is None and phrases_from_critique(garbage).phrases == []
    assert worst_score(parse_critique(T2I_FULL)) == 2.0


# --- the follow-up prompt --------------------------------------------------------------------------------

def test_templates_have_the_fields_and_one_image_per_judged_image():
    for task, images in ((Task.T2I, 1), (Task.EDIT, 2)):
        text = load_template(FOLLOWUP_TEMPLATES["defects"][task])
        assert text.count("<image>") == images
        for field in ("{request}", "{critique}", "{max_regions}", "REGION: none"):
            assert field in text


def _critic(script: AnswerScript | None = None) -> Critic:
    return Critic(backend=OpenAIServerBackend("http://127.0.0.1:9", "critic"), script=script)   # renders only


def test_render_fills_fields_once_and_never_rescans_quoted_text():
    crit = physical('The sign says "{request}" and shows <image> twice.')
    chat = _critic().prepare(followup_item(crit, "a cat {critique}", Image.new("RGB", (32, 32)), max_regions=3)).chat
    assert len(chat.images) == 1
    assert "User request: a cat {critique}" in chat.text                  # the request is not re-expanded
    assert 'The sign says "{request}"' in chat.text and "[image]" in chat.text
    assert "at most 3 regions" in chat.text
    assert "Physical and Visual Quality (score 2)" in critique_digest(crit)
    item = followup_item(crit, "x", Image.new("RGB", (32, 32)))
    with pytest.raises(ValueError, match="takes 1 image"):
        _critic().prepare(type(item)(item.task, item.mode, item.request, (), item.fields))


def test_scripted_follow_up_needs_a_defects_rule():
    script = AnswerScript.from_json('[{"answer": "CRITIQUE", "when_request_contains": "cat"},'
                                    ' {"answer": "REGION: paw", "mode": "defects"}]')
    item = followup_item(physical("a bent paw"), "a red cat", Image.new("RGB", (32, 32)))
    assert _critic(script).prepare(item).forced == "REGION: paw"
    only_critique = AnswerScript.from_json('[{"answer": "CRITIQUE"}]')
    assert _critic(only_critique).prepare(item).forced is None   # a critique rule never answers it
    assert _critic().prepare(item).forced is None


def test_follow_up_through_the_tiny_critics_decoding(qwen3_critic):
    """The scripted answer is forced through the model's own generate() and parsed like a real one."""
    crit = parse_critique(T2I_FULL)
    script = AnswerScript.from_json('[{"answer": "REGION: left paw | Physical and Visual Quality | severe\\n'
                                    'REGION: sign text | Text Rendering | clear", "mode": "defects"}]')
    critic = qwen3_critic.with_script(script)
    seen = []
    result = ask_regions(critic, crit, T2I_REQUEST, Image.new("RGB", (64, 64), (200, 40, 40)), max_regions=4,
                         options=GenerationOptions(max_new_tokens=128, temperature=0.0),
                         progress=lambda done, budget: seen.append(done))
    assert [(p.text, p.severity) for p in result.phrases] == [("left paw", "severe"), ("sign text", "clear")]
    assert result.raw.startswith("REGION: left paw") and seen


def test_follow_up_free_decoding_of_random_weights_is_flagged_not_invented(qwen3_critic):
    result = ask_regions(qwen3_critic, parse_critique(T2I_FULL), T2I_REQUEST, Image.new("RGB", (64, 64)),
                         options=GenerationOptions(max_new_tokens=24, temperature=0.0))
    assert result.phrases == [] and not result.nothing_to_fix and result.warnings


def test_edit_follow_up_shows_source_then_edited(qwen3_critic):
    crit = parse_critique(EDIT_FULL, "edit")
    script = AnswerScript.from_json('[{"answer": "REGION: house | Image Faithfulness | clear", "mode": "defects"}]')
    src, edited = Image.new("RGB", (48, 48), (0, 0, 255)), Image.new("RGB", (64, 64), (255, 0, 0))
    captured = {}
    critic = qwen3_critic.with_script(script)
    original = critic.backend.generate

    def spy(requests, options, **kw):
        captured["images"] = requests[0].images
        return original(requests, options, **kw)

    critic.backend.generate = spy
    try:
        result = ask_regions(critic, crit, "make the sky purple", edited, src, options=GenerationOptions(64, 0.0))
    finally:
        del critic.backend.generate
    assert [p.dimension for p in result.phrases] == ["image_faithfulness"]
    assert [im.size for im in captured["images"]] == [(48, 48), (64, 64)]
