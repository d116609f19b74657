"""The progress bar follows the answer, not the token budget (issue 13): it moves while the critic
writes, never goes back, and reaches its end exactly when the answers end, even though a critique
uses a small part of its 2048-token budget."""
from __future__ import annotations

from PIL import Image

from rationalrewards.backends.base import GenerationOptions
from rationalrewards.critic.progress import UNFINISHED, AnswerProgress, headers_in
from rationalrewards.critic.script import AnswerScript, Rule
from tests.unit.rr_sample_answers import T2I_FULL


def test_headers_are_counted_as_the_template_skeleton_writes_them():
    assert headers_in("# Detailed Judgement\n1. Text Faithfulness:\n## Justification: x\n## Score: 3\n") == 3
    assert headers_in("**## Score:** 3\n> # Summary: ok\nno header # here") == 2
    assert headers_in("") == 0


def test_a_running_answer_never_shows_done_and_a_finished_one_always_does():
    seen: list[float] = []
    track = AnswerProgress([4, 4], seen.append)
    track(0, ["# A\n## B\n## C\n## D\n## E", "# A"], False)   # more headers than expected: still not done
    assert seen[-1] == (UNFINISHED + 0.25) / 2
    track(0, ["# A", "# A"], False)                            # a shorter text never moves the bar back
    assert seen[-1] == (UNFINISHED + 0.25) / 2
    track(1, ["whatever"], True)
    assert seen[-1] == (UNFINISHED + 1.0) / 2
    track.finish()
    assert seen[-1] == 1.0 and seen == sorted(seen)


def test_the_critic_reports_the_answer_through_real_decoding_and_ends_at_one(qwen3_critic):
    critic = qwen3_critic.with_script(AnswerScript((Rule(answer=T2I_FULL),)))
    fractions: list[float] = []
    tokens: list[int] = []
    options = GenerationOptions(max_new_tokens=2048, temperature=0)
    [critique] = critic.critique([Image.new("RGB", (64, 64), "red")], "a red cat", options,
                                 progress=lambda done, budget: tokens.append(done), answer_progress=fractions.append)
    assert critique.complete
    assert max(tokens) < 2048 / 2                 # the answer used a small part of the budget ...
    assert fractions[-1] == 1.0                   # ... and the bar still ends when it ends
    assert fractions == sorted(fractions)         # never backwards
    middle = [f for f in fractions if 0 < f < 1]
    assert len(middle) >= 3                       # and it moved while the critic wrote, section by section


def test_a_batch_reports_each_answer_as_it_ends(qwen3_critic):
    critic = qwen3_critic.with_script(AnswerScript((Rule(answer=T2I_FULL),)))
    critic.backend.batch_size, old = 1, critic.backend.batch_size
    try:
        fractions: list[float] = []
        critic.critique([Image.new("RGB", (64, 64), c) for c in ("red", "blue")], "a red cat",
                        GenerationOptions(temperature=0), answer_progress=fractions.append)
    finally:
        critic.backend.batch_size = old
    assert 0.5 in fractions and fractions[-1] == 1.0 and fractions == sorted(fractions)
