"""Scripted answers: JSON forms, errors, rule selection."""
from __future__ import annotations

import json

import pytest

from rationalrewards.judging.rubric import Task
from rationalrewards.critic.script import AnswerScript, Rule


def test_bare_string():
    s = AnswerScript.from_json(json.dumps("ANSWER"))
    assert s.rules == (Rule("ANSWER"),)
    assert s.answer_for(Task.T2I, "pointwise", "anything") == "ANSWER"


def test_single_object():
    s = AnswerScript.from_json('{"answer": "X", "when_request_contains": "cat", "task": "edit", "mode": "pairwise"}')
    assert s.rules == (Rule("X", "cat", Task.EDIT, "pairwise"),)


def test_list_of_strings_and_objects():
    s = AnswerScript.from_json(json.dumps(["A", {"answer": "B", "when_request_contains": "dog"}]))
    assert [r.answer for r in s.rules] == ["A", "B"]
    assert s.rules[1].when_request_contains == "dog"


def test_empty_list_never_matches():
    s = AnswerScript.from_json("[]")
    assert s.answer_for(Task.T2I, "pointwise", "x") is None


def test_null_task_and_mode_mean_any():
    s = AnswerScript.from_json('[{"answer": "X", "task": null, "mode": null}]')
    assert s.rules[0].task is None and s.rules[0].mode is None
    assert s.answer_for(Task.EDIT, "pairwise", "x") == "X"


@pytest.mark.parametrize("text", ["", "{", "[{'answer': 'x'}]", "not json", '[{"answer": "x",}]'])
def test_bad_json(text):
    with pytest.raises(ValueError, match="not valid JSON") as e:
        AnswerScript.from_json(text)
    assert "answer" in str(e.value)   # says what shape is expected


@pytest.mark.parametrize("text, fragment", [
    ("42", "list of rules"), ("null", "list of rules"), ("true", "list of rules"),
    ('[{"when_request_contains": "cat"}]', "rule 0 needs an 'answer' string"),
    ('["ok", {"answer": 3}]', "rule 1 needs an 'answer' string"),
    ('[["nested"]]', "rule 0"),
    ('[{"answer": "x", "task": ["t2i"]}]', "rule 0 has task"),
    ('[{"answer": "x", "mode": {"m": 1}}]', "rule 0 has mode"),
    ('[{"answer": "x", "when": "cat"}]', "unknown keys ['when']"),
    ('[{"answer": "x", "Task": "t2i", "modes": "pointwise"}]', "unknown keys ['Task', 'modes']"),
])
def test_bad_shapes_have_clear_messages(text, fragment):
    with pytest.raises(ValueError) as e:
        AnswerScript.from_json(text)
    assert fragment in str(e.value)


def test_unknown_task_is_a_clear_value_error():
    with pytest.raises(ValueError) as e:
        AnswerScript.from_json('[{"answer": "x", "task": "video"}]')
    msg = str(e.value)
    assert "rule 0" in msg and "video" in msg and "t2i" in msg and "edit" in msg


def test_unknown_mode_is_a_clear_value_error():
    # a misspelt mode would otherwise never match, silently
    with pytest.raises(ValueError) as e:
        AnswerScript.from_json('[{"answer": "x"}, {"answer": "y", "mode": "pointwize"}]')
    msg = str(e.value)
    assert "rule 1" in msg and "pointwize" in msg and "pointwise" in msg and "pairwise" in msg


def test_most_specific_rule_wins_regardless_of_order():
    s = AnswerScript.from_json(json.dumps([
        {"answer": "generic"},
        {"answer": "cat", "when_request_contains": "cat"},
        {"answer": "red cat", "when_request_contains": "red cat"},
    ]))
    assert s.answer_for(Task.T2I, "pointwise", "A Red Cat on a mat") == "red cat"   # case-insensitive
    assert s.answer_for(Task.T2I, "pointwise", "a black cat") == "cat"
    assert s.answer_for(Task.T2I, "pointwise", "a dog") == "generic"
    reversed_script = AnswerScript(tuple(reversed(s.rules)))
    assert reversed_script.answer_for(Task.T2I, "pointwise", "a red cat") == "red cat"


def test_equal_specificity_keeps_order():
    s = AnswerScript((Rule("first", "cat"), Rule("second", "dog")))
    assert s.answer_for(Task.T2I, "pointwise", "cat and dog") == "first"


def test_task_and_mode_filters():
    s = AnswerScript.from_json(json.dumps([
        {"answer": "edit-pair", "task": "edit", "mode": "pairwise"},
        {"answer": "t2i-any", "task": "t2i"},
        {"answer": "pointwise-any", "mode": "pointwise"},
    ]))
    assert s.answer_for(Task.EDIT, "pairwise", "x") == "edit-pair"
    assert s.answer_for(Task.T2I, "pairwise", "x") == "t2i-any"
    assert s.answer_for(Task.EDIT, "pointwise", "x") == "pointwise-any"
    assert s.answer_for(Task.T2I, "pointwise", "x") == "t2i-any"   # first of equal specificity


def test_filters_and_text_together():
    s = AnswerScript((Rule("edit cat", "cat", Task.EDIT), Rule("any")))
    assert s.answer_for(Task.EDIT, "pointwise", "a cat") == "edit cat"
    assert s.answer_for(Task.T2I, "pointwise", "a cat") == "any"
    only = AnswerScript((Rule("edit cat", "cat", Task.EDIT),))
    assert only.answer_for(Task.T2I, "pointwise", "a cat") is None
    assert only.answer_for(Task.EDIT, "pointwise", "a dog") is None


# --- the Replay node's text (issue 22): a pasted critique, or JSON rules -------------------------------

def test_a_pasted_critique_answers_every_prompt_as_written():
    critique = "## Text Faithfulness\n### Justification: the fox is there\n### Score: 3.5\n"
    s = AnswerScript.from_text("\n" + critique + "\n")
    assert s.rules == (Rule(critique.strip()),)
    assert s.answer_for(Task.EDIT, "pairwise", "any request at all") == critique.strip()


@pytest.mark.parametrize("text", ["", "   \n"])
def test_empty_text_scripts_nothing(text):
    assert AnswerScript.from_text(text).rules == ()


def test_text_that_starts_like_json_is_read_as_rules_and_its_errors_say_both_forms():
    s = AnswerScript.from_text(' [{"answer": "X", "when_request_contains": "cat"}]')
    assert s.rules == (Rule("X", "cat"),)
    with pytest.raises(ValueError, match="not valid JSON") as e:
        AnswerScript.from_text('[{"answer": "x",}]')
    assert "paste the critique text alone" in str(e.value)
