"""The Critic end to end on the tiny checkpoints: templates -> model.generate -> parser."""
from __future__ import annotations

import json
import math

import pytest
from PIL import Image

from rationalrewards import CritiqueInputError, rank
from rationalrewards.backends.base import GenerationInterrupted, GenerationOptions
from rationalrewards.critic.critic import Critic, Item
from rationalrewards.judging.critique import Critique, PairwiseCritique, ScoreStatus, Winner
from rationalrewards.critic.images import ImageError
from rationalrewards.judging.rubric import Task
from rationalrewards.critic.script import AnswerScript, Rule
from tests.unit.rr_sample_answers import (EDIT_FULL, EDIT_FULL_SCORES, EDIT_PAIR, T2I_FULL, T2I_FULL_SCORES,
                                          T2I_PAIR, t2i_answer)

FREE = GenerationOptions(max_new_tokens=16, temperature=0)
SCRIPTED = GenerationOptions(temperature=0)          # full budget: the forced answer ends with EOS


def red(size=(64, 64)):
    return Image.new("RGB", size, (200, 20, 20))


def blue(size=(64, 48)):
    return Image.new("RGB", size, (20, 20, 200))


class GenerateSpy:
    """Counts model.generate calls (the scripted path must go through the model)."""

    def __init__(self, model):
        self.model, self.real, self.calls = model, model.generate, 0

    def __call__(self, *a, **k):
        self.calls += 1
        return self.real(*a, **k)


@pytest.fixture
def spy(tiny_critic, monkeypatch):
    s = GenerateSpy(tiny_critic.backend.model)
    monkeypatch.setattr(tiny_critic.backend.model, "generate", s)
    return s


def scripted(critic: Critic, *rules: Rule) -> Critic:
    return critic.with_script(AnswerScript(tuple(rules)))


# --- free decoding (random weights): the parse-failure path --------------------------------------------

def test_free_generation_gives_nan_scores_and_warnings(tiny_critic, spy):
    out = tiny_critic.critique([red(), blue()], "a red cat", FREE)
    assert spy.calls == 1
    assert len(out) == 2
    for c in out:
        assert isinstance(c, Critique) and c.task is Task.T2I
        assert c.raw
        assert all(d.status is ScoreStatus.MISSING for d in c.dimensions.values())
        assert all(math.isnan(d.value) for d in c.dimensions.values())
        assert math.isnan(c.overall())
        assert any("no score found" in w for w in c.warnings)
        json.dumps(c.to_dict(), allow_nan=False)
    ranked = rank(out)
    assert [r.index for r in ranked] == [0, 1]


def test_free_pairwise_is_undecided_under_strict(tiny_critic):
    p = tiny_critic.compare(red(), blue(), "a red cat", FREE)
    assert isinstance(p, PairwiseCritique)
    assert p.decide("strict").winner is Winner.UNDECIDED
    assert p.winner is Winner.TIE          # published: every unreadable score counts 2.5
    assert p.warnings


# --- scripted answers: the success path ------------------------------------------------------------------

def test_scripted_t2i_exact_scores(tiny_critic, spy):
    critic = scripted(tiny_critic, Rule(T2I_FULL))
    assert critic.backend is tiny_critic.backend and tiny_critic.script is None
    [c] = critic.critique([red()], "a red cat holding a sign", SCRIPTED)
    assert spy.calls == 1
    assert c.raw == T2I_FULL
    assert {k: d.value for k, d in c.dimensions.items()} == T2I_FULL_SCORES
    assert c.warnings == []
    assert c.overall() == pytest.approx(((3.5 + 2.5 + 2) / 3 - 1) / 3)
    assert c.refined_request.endswith("shadows consistent with the sun.")


def test_scripted_with_default_sampling_options(tiny_critic):
    [c] = scripted(tiny_critic, Rule(T2I_FULL)).critique([red()], "a red cat")    # t=0.1, 2048 tokens
    assert c.raw == T2I_FULL


def test_mixed_batch_one_forced_one_free(tiny_critic, spy):
    answer = t2i_answer(tf="4", pq="3", tr="N/A")
    budget = len(tiny_critic.backend.tokenizer(answer, add_special_tokens=False)["input_ids"]) + 1
    opts = GenerationOptions(max_new_tokens=budget, temperature=0)
    critic = scripted(tiny_critic, Rule(answer, when_request_contains="cat"))
    cat, dog = critic.critique([red(), blue()], ["a red cat", "a blue dog"], opts)
    assert spy.calls == 1                     # one batch
    assert cat.score("text_faithfulness") == 4.0 and cat.score("physical_quality") == 3.0
    assert cat.dimensions["text_rendering"].status is ScoreStatus.NA
    assert cat.warnings == []
    assert all(d.status is ScoreStatus.MISSING for d in dog.dimensions.values())
    assert math.isnan(dog.overall())
    # the free row is the same text it would be alone
    [alone] = tiny_critic.critique([blue()], "a blue dog", opts)
    assert dog.raw == alone.raw
    assert [r.index for r in rank([dog, cat])] == [1, 0]


def test_scripted_answer_truncated_by_budget_is_partial_not_an_error(tiny_critic):
    [c] = scripted(tiny_critic, Rule(T2I_FULL)).critique([red()], "x", GenerationOptions(max_new_tokens=60,
                                                                                          temperature=0))
    assert T2I_FULL.startswith(c.raw) and c.raw != T2I_FULL
    assert any(d.status is ScoreStatus.MISSING for d in c.dimensions.values())
    assert c.warnings
    assert math.isnan(c.overall())


def test_edit_critique_with_sources(tiny_critic, spy):
    critic = scripted(tiny_critic, Rule(EDIT_FULL, task=Task.EDIT, mode="pointwise"),
                      Rule("wrong script", task=Task.T2I))
    out = critic.critique([blue(), blue()], "make the sky purple", SCRIPTED, sources=[red(), red((80, 64))])
    assert spy.calls == 1
    for c in out:
        assert c.task is Task.EDIT
        assert list(c.dimensions) == ["text_faithfulness", "image_faithfulness", "physical_quality",
                                      "text_rendering"]
        assert {k: c.score(k) for k in EDIT_FULL_SCORES} == EDIT_FULL_SCORES
        assert c.dimensions["text_rendering"].status is ScoreStatus.NA
        assert c.overall("rl_edit") == pytest.approx(((4 + 3.5) / 2 - 1) / 3)
        assert c.warnings == []


def test_compare_t2i_and_edit(tiny_critic):
    critic = scripted(tiny_critic, Rule(T2I_PAIR, task=Task.T2I, mode="pairwise"),
                      Rule(EDIT_PAIR, task=Task.EDIT, mode="pairwise"))
    p = critic.compare(red(), blue(), "a red cat", SCRIPTED)
    assert p.task is Task.T2I and p.totals() == (8.5, 6.5) and p.winner is Winner.A
    assert p.raw == T2I_PAIR
    e = critic.compare(red(), blue(), "make the sky purple", SCRIPTED, source=red((48, 48)))
    assert e.task is Task.EDIT and e.totals() == (12.0, 14.0) and e.winner is Winner.B
    assert e.dimensions["image_faithfulness"].winner is Winner.B


def test_images_reach_the_processor_in_template_order(tiny_critic, monkeypatch):
    captured = []
    real = tiny_critic.backend.encode

    def encode(reqs):
        captured.append([im.size for r in reqs for im in r.images])
        return real(reqs)
    monkeypatch.setattr(tiny_critic.backend, "encode", encode)
    critic = scripted(tiny_critic, Rule("x"))
    critic.compare(red((64, 64)), blue((64, 48)), "p", SCRIPTED, source=red((80, 64)))
    assert captured == [[(80, 64), (64, 64), (64, 48)]]


# --- progress / stop through the critic ---------------------------------------------------------------------

def test_critic_progress_and_interrupt(tiny_critic):
    calls = []
    tiny_critic.critique([red()], "a red cat", GenerationOptions(max_new_tokens=5, temperature=0),
                         progress=lambda d, t: calls.append((d, t)))
    assert calls and [d for d, _ in calls] == list(range(1, len(calls) + 1)) and calls[-1][0] <= 5
    assert all(t == 5 for _, t in calls)
    with pytest.raises(GenerationInterrupted):
        tiny_critic.critique([red()], "a red cat", FREE, should_stop=lambda: True)
    with pytest.raises(GenerationInterrupted):
        tiny_critic.compare(red(), blue(), "a red cat", FREE, should_stop=lambda: True)
    assert len(tiny_critic.critique([red()], "a red cat", FREE)) == 1


# --- input errors: raised before the model runs --------------------------------------------------------------

@pytest.mark.parametrize("prompt", ["", "   \n\t"])
def test_empty_prompt(tiny_critic, spy, prompt):
    with pytest.raises(CritiqueInputError, match="prompt is empty"):
        tiny_critic.critique([red()], prompt, FREE)
    with pytest.raises(CritiqueInputError, match="instruction is empty"):
        tiny_critic.critique([red()], prompt, FREE, sources=[blue()])
    with pytest.raises(CritiqueInputError):
        tiny_critic.compare(red(), blue(), prompt, FREE)
    with pytest.raises(CritiqueInputError):
        tiny_critic.critique([red(), red()], ["ok", prompt], FREE)
    assert spy.calls == 0


def test_mismatched_counts(tiny_critic, spy):
    with pytest.raises(CritiqueInputError, match="2 source images for 3 images; give one, or one per image"):
        tiny_critic.critique([red(), blue(), red()], "x", FREE, sources=[red(), blue()])
    with pytest.raises(CritiqueInputError, match="3 prompts for 2 images"):
        tiny_critic.critique([red(), blue()], ["a", "b", "c"], FREE)
    assert spy.calls == 0
    from rationalrewards.errors import RationalRewardsError
    assert issubclass(CritiqueInputError, ValueError) and issubclass(CritiqueInputError, RationalRewardsError)


def test_one_source_is_used_for_every_edited_image(tiny_critic):
    """Edit-source broadcasting lives in the core (as prompt broadcasting does): one source, N edits."""
    critic = scripted(tiny_critic, Rule(EDIT_FULL, when_request_contains="night", task=Task.EDIT))
    src = red()
    out = critic.critique([red(), blue()], "make it night", SCRIPTED, sources=[src])
    assert [c.raw for c in out] == [EDIT_FULL, EDIT_FULL] and all(c.task is Task.EDIT for c in out)


def test_one_prompt_in_a_list_is_broadcast(tiny_critic):
    critic = scripted(tiny_critic, Rule(T2I_FULL, when_request_contains="cat"))
    out = critic.critique([red(), blue()], ["a cat"], SCRIPTED)
    assert [c.raw for c in out] == [T2I_FULL, T2I_FULL]


def test_tiny_image_is_refused_before_generation(tiny_critic, spy):
    with pytest.raises(ImageError, match="edited image is 1x1"):
        tiny_critic.critique([Image.new("RGB", (1, 1))], "x", FREE, sources=[red()])
    with pytest.raises(ImageError, match="source image is 8x8"):
        tiny_critic.compare(red(), blue(), "x", FREE, source=Image.new("RGB", (8, 8)))
    assert spy.calls == 0


def test_rgba_and_greyscale_inputs_work(tiny_critic):
    critic = scripted(tiny_critic, Rule(T2I_FULL))
    out = critic.critique([Image.new("RGBA", (40, 40), (0, 0, 0, 0)), Image.new("L", (40, 40), 128)], "x",
                          SCRIPTED)
    assert [c.raw for c in out] == [T2I_FULL, T2I_FULL]


# --- max_pixels ---------------------------------------------------------------------------------------------

class EncodeSpy:
    """Wraps the backend's encode (the processor, or the torch-built inputs) and records the image sizes it
    is given and the prompt length it returns."""

    def __init__(self, encode):
        self._encode, self.sizes, self.lengths = encode, [], []

    def __call__(self, requests):
        self.sizes.append([im.size for r in requests for im in r.images])
        out = self._encode(requests)
        self.lengths.append(out["input_ids"].shape[1])
        return out


def test_max_pixels_downsizes_what_reaches_the_processor(tiny_critic, monkeypatch):
    spy = EncodeSpy(tiny_critic.backend.encode)
    monkeypatch.setattr(tiny_critic.backend, "encode", spy)
    big = Image.new("RGB", (400, 200), (1, 2, 3))
    full = Critic(backend=tiny_critic.backend, max_pixels=None)
    small = Critic(backend=tiny_critic.backend, max_pixels=48 * 48)
    full.critique([big], "x", GenerationOptions(max_new_tokens=1, temperature=0))
    small.critique([big], "x", GenerationOptions(max_new_tokens=1, temperature=0))
    assert spy.sizes[0] == [(400, 200)]
    w, h = spy.sizes[1][0]
    assert w * h <= 48 * 48 and abs(w / h - 2) < 0.1
    assert spy.lengths[1] < spy.lengths[0]    # fewer image tokens
    assert big.size == (400, 200)             # the caller's image is not modified


def test_build_renders_the_template(tiny_critic):
    req = tiny_critic.build(Item(Task.EDIT, "pointwise", "  make it {blue}  ", (red(), blue())))
    assert "User Instruction: make it {blue}\n" in req.text
    assert len(req.images) == 2
