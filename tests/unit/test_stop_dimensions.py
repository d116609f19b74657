"""Loop End's stop dimensions are typed by the names the artist sees on the card (issue 13); the keys
saved by workflows of the previous release keep working."""
from __future__ import annotations

import pytest

from rationalrewards.judging.loop import DEFAULT_STOP_DIMENSIONS, parse_stop_dimensions, stop_dimension_names
from rationalrewards.judging.rubric import ALL_DIMENSIONS, dimension_named


def test_the_default_is_written_with_on_screen_names_and_reads_back_as_the_published_rule():
    assert stop_dimension_names() == "Text Faithfulness, Physical and Visual Quality"
    assert parse_stop_dimensions(stop_dimension_names()) == DEFAULT_STOP_DIMENSIONS


@pytest.mark.parametrize("text, keys", [
    ("Text Faithfulness, Physical and Visual Quality", ("text_faithfulness", "physical_quality")),
    ("text_faithfulness, physical_quality", ("text_faithfulness", "physical_quality")),   # 0.1.0 workflows
    ("  physical and visual QUALITY ,text rendering", ("physical_quality", "text_rendering")),
    ("Image Faithfulness", ("image_faithfulness",)),
    ("Text Faithfulness, text_faithfulness", ("text_faithfulness",)),        # the same one twice counts once
    ("physical quality", ("physical_quality",)),                            # an alias the parser also reads
])
def test_names_keys_and_aliases_are_accepted(text, keys):
    assert parse_stop_dimensions(text) == keys


@pytest.mark.parametrize("text, shown", [
    ("Text Faithfulnes, Physical and Visual Quality", "'Text Faithfulnes'"),
    ("sharpness", "'sharpness'"),
])
def test_an_unknown_name_is_refused_with_the_names_that_work(text, shown):
    with pytest.raises(ValueError) as info:
        parse_stop_dimensions(text)
    message = str(info.value)
    assert shown in message
    for d in ALL_DIMENSIONS:
        assert d.title in message


@pytest.mark.parametrize("text", ["", "  ", " , ,"])
def test_an_empty_list_is_refused(text):
    with pytest.raises(ValueError, match="no stop dimension"):
        parse_stop_dimensions(text)


def test_every_title_names_its_own_dimension():
    for d in ALL_DIMENSIONS:
        assert dimension_named(d.title) is d and dimension_named(d.key) is d
    assert dimension_named("Faithfulness") is None
