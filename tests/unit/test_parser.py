"""The tolerant parser: full answers, drift the checkpoints show, hostile input, and properties."""
from __future__ import annotations

import math
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rationalrewards.judging.critique import Critique, PairwiseCritique, ScoreStatus, Winner
from rationalrewards.judging.parser import ParseError, parse_critique, parse_pairwise
from rationalrewards.judging.rubric import Task
from tests.unit.rr_sample_answers import (huge_answer, EDIT_FULL, EDIT_FULL_SCORES, EDIT_PAIR, T2I_FULL, T2I_FULL_SCORES,
                                          T2I_PAIR, T2I_PAIR_PUBLISHED, T2I_SCORE_FIRST, T2I_SCORE_FIRST_SCORES,
                                          t2i_answer)

T2I_KEYS = ["text_faithfulness", "physical_quality", "text_rendering"]
EDIT_KEYS = ["text_faithfulness", "image_faithfulness", "physical_quality", "text_rendering"]


def scores(c: Critique) -> dict[str, float]:
    return {k: d.value for k, d in c.dimensions.items()}


def warned(c, *fragments: str) -> bool:
    """True when one warning contains every fragment (case-insensitive)."""
    return any(all(f.lower() in w.lower() for f in fragments) for w in c.warnings)


# --- full, well-formed answers ----------------------------------------------------------------------

def test_full_t2i_answer():
    c = parse_critique(T2I_FULL, Task.T2I)
    assert list(c.dimensions) == T2I_KEYS
    assert scores(c) == T2I_FULL_SCORES
    assert all(d.status is ScoreStatus.OK for d in c.dimensions.values())
    assert c.dimensions["physical_quality"].justification == \
        "The left paw has six toes and the shadow falls the wrong way."
    assert c.request_analysis == ('The user wants a red cat holding a sign that says "HELLO" '
                                  "in a sunny garden.")
    assert c.summary == "A faithful image with anatomy and spelling problems."
    assert c.refinement_comments == "Ask for five toes, consistent sunlight, and spell the word out."
    assert c.refined_request.startswith("A red cat with anatomically correct paws")
    assert c.refined_request.endswith("shadows consistent with the sun.")
    assert c.warnings == []
    assert c.complete
    assert c.raw == T2I_FULL
    assert c.overall() == pytest.approx(((3.5 + 2.5 + 2) / 3 - 1) / 3)


def test_full_edit_answer():
    c = parse_critique(EDIT_FULL, "edit")
    assert c.task is Task.EDIT
    assert list(c.dimensions) == EDIT_KEYS
    got = scores(c)
    assert {k: got[k] for k in EDIT_FULL_SCORES} == EDIT_FULL_SCORES
    assert c.dimensions["text_rendering"].status is ScoreStatus.NA
    assert math.isnan(got["text_rendering"])
    assert c.dimensions["image_faithfulness"].justification.startswith("The house on the left")
    assert c.refined_request == "Make the sky purple; keep the house, its colour and everything else unchanged."
    assert c.request_analysis.startswith("The instruction asks")
    assert c.warnings == []
    assert c.complete


def test_full_t2i_pairwise():
    p = parse_pairwise(T2I_PAIR, Task.T2I)
    assert isinstance(p, PairwiseCritique)
    assert list(p.dimensions) == T2I_KEYS
    tf = p.dimensions["text_faithfulness"]
    assert (tf.a.value, tf.b.value) == (3.5, 2.0)
    assert tf.justification == "Both show the red cat; Image B misses the sign."
    assert [d.winner for d in p.dimensions.values()] == [Winner.A, Winner.B, Winner.A]
    assert p.totals() == (8.5, 6.5)
    assert p.winner is Winner.A
    assert p.summary.startswith("Image A is better overall")
    assert p.warnings == []


def test_full_edit_pairwise():
    p = parse_pairwise(EDIT_PAIR, "edit")
    assert list(p.dimensions) == EDIT_KEYS
    tr = p.dimensions["text_rendering"]
    assert tr.a.status is ScoreStatus.NA and tr.b.status is ScoreStatus.NA
    assert [d.winner for d in p.dimensions.values()] == [Winner.TIE, Winner.B, Winner.TIE, Winner.TIE]
    assert p.totals() == (12.0, 14.0)
    assert p.winner is Winner.B
    assert p.warnings == []


# --- missing and reordered sections ------------------------------------------------------------------

def test_missing_summary_and_refinement():
    text = T2I_FULL.split("# Summary")[0]
    c = parse_critique(text)
    assert scores(c) == T2I_FULL_SCORES
    assert c.summary is None and c.refined_request is None and c.refinement_comments is None
    assert warned(c, "summary") and warned(c, "refined request")


def test_missing_score_line_is_missing_not_invented():
    text = T2I_FULL.replace("## Score: 2.5\n", "")
    c = parse_critique(text)
    pq = c.dimensions["physical_quality"]
    assert pq.status is ScoreStatus.MISSING and math.isnan(pq.value)
    assert pq.justification.startswith("The left paw")
    assert c.score("text_faithfulness") == 3.5 and c.score("text_rendering") == 2.0
    assert warned(c, "Physical and Visual Quality", "no score")
    assert not c.complete
    assert math.isnan(c.overall())


def test_missing_judgement_header_only():
    c = parse_critique(T2I_FULL.replace("# Detailed Judgement\n", ""))
    assert scores(c) == T2I_FULL_SCORES
    assert c.warnings == []


def test_summary_before_judgement():
    judgement = T2I_FULL[T2I_FULL.index("# Detailed Judgement"):T2I_FULL.index("# Summary")]
    summary = "# Summary: Summary first, then the details.\n"
    refinement = T2I_FULL[T2I_FULL.index("# User Request Refinement"):]
    c = parse_critique(summary + judgement + refinement)
    assert c.summary == "Summary first, then the details."
    assert scores(c) == T2I_FULL_SCORES
    assert c.refined_request.startswith("A red cat with anatomically")
    assert c.warnings == []


def test_refined_request_before_summary():
    text = t2i_answer(refined="unused").split("# Summary")[0] + (
        "## Refined Request: A red cat\nholding a sign\n# Summary: the summary comes last\n")
    c = parse_critique(text)
    assert c.refined_request == "A red cat\nholding a sign"
    assert c.summary == "the summary comes last"
    assert scores(c) == {"text_faithfulness": 3.5, "physical_quality": 2.5, "text_rendering": 2.0}


def test_dimensions_in_another_order_are_matched_by_name():
    text = ("3. Text Rendering:\n## Justification: r\n## Score: 1.5\n"
            "1. Text Faithfulness:\n## Justification: t\n## Score: 3\n"
            "2. Physical and Visual Quality:\n## Justification: p\n## Score: 4\n")
    c = parse_critique(text)
    assert scores(c) == {"text_faithfulness": 3.0, "physical_quality": 4.0, "text_rendering": 1.5}
    assert c.dimensions["text_rendering"].justification == "r"


# --- score spellings ---------------------------------------------------------------------------------

@pytest.mark.parametrize("raw, value", [
    ("3", 3.0), ("3.5", 3.5), ("**3**", 3.0), ("[3.5]", 3.5), ("(2)", 2.0), ("3.5/4", 3.5), ("4/4", 4.0),
    ("3.5 (minor issues)", 3.5), ("2 - clear problems with the hands", 2.0), ("`3`", 3.0), ("**2.5/4**", 2.5),
    ("1.0", 1.0), ("  3.25  ", 3.25),
])
def test_score_spellings(raw, value):
    c = parse_critique(t2i_answer(pq=raw))
    pq = c.dimensions["physical_quality"]
    assert pq.status is ScoreStatus.OK
    assert pq.value == value
    assert c.warnings == []


@pytest.mark.parametrize("raw", ["7/10", "3/5", "70/100"])
def test_score_on_another_scale_is_missing_with_warning(raw):
    c = parse_critique(t2i_answer(tf=raw))
    tf = c.dimensions["text_faithfulness"]
    assert tf.status is ScoreStatus.MISSING and math.isnan(tf.value) and tf.score is None
    assert tf.raw_score == raw
    assert warned(c, "Text Faithfulness", "not on the 1-4 scale")
    assert math.isnan(c.overall())


@pytest.mark.parametrize("raw, clamped", [("5", 4.0), ("4.5", 4.0), ("0", 1.0), ("0.5", 1.0), ("-2", 1.0)])
def test_out_of_range_is_clamped_with_warning(raw, clamped):
    c = parse_critique(t2i_answer(tf=raw))
    tf = c.dimensions["text_faithfulness"]
    assert tf.status is ScoreStatus.OK and tf.value == clamped
    assert warned(c, "Text Faithfulness", "outside 1-4", "clamped")


@pytest.mark.parametrize("raw", ["N/A", "n/a", "NA", "N.A.", "Not applicable", "[N/A]", "**N/A**",
                                 "N/A (no text requested)"])
def test_na_where_allowed(raw):
    c = parse_critique(t2i_answer(tr=raw))
    tr = c.dimensions["text_rendering"]
    assert tr.status is ScoreStatus.NA, (raw, c.warnings)
    assert math.isnan(tr.value)
    assert c.warnings == []
    assert c.complete
    assert c.overall() == pytest.approx(((3.5 + 2.5) / 2 - 1) / 3)


def test_na_where_not_allowed_is_missing_with_warning():
    c = parse_critique(t2i_answer(tf="N/A"))
    tf = c.dimensions["text_faithfulness"]
    assert tf.status is ScoreStatus.MISSING and math.isnan(tf.value)
    assert warned(c, "Text Faithfulness", "N/A")
    assert math.isnan(c.overall())


def test_no_number_in_score_line():
    c = parse_critique(t2i_answer(pq="good"))
    assert c.dimensions["physical_quality"].status is ScoreStatus.MISSING
    assert warned(c, "Physical and Visual Quality", "no number")


# --- refined request ---------------------------------------------------------------------------------

def test_multiline_refined_request_read_to_the_end():
    refined = ("A red cat sitting on a wooden bench,\nholding a white sign that reads \"HELLO\",\n\n"
               "soft morning light, 35mm photo, (sharp focus:1.2)")
    c = parse_critique(t2i_answer(refined=refined) + "\n")
    assert c.refined_request == refined


def test_refined_request_stops_at_a_later_summary_header():
    text = t2i_answer().split("# Summary")[0] + (
        "# User Request Refinement:\n## Refinement Comments: fix the paw\n"
        "## Refined Request: line one\nline two\n\n# Summary: written after the refinement\n")
    c = parse_critique(text)
    assert c.refined_request == "line one\nline two"
    assert c.summary == "written after the refinement"


def test_refined_request_quotes_are_stripped():
    c = parse_critique(t2i_answer(refined='"a red cat, studio light"'))
    assert c.refined_request == "a red cat, studio light"


# --- wrappers around the answer ----------------------------------------------------------------------

def test_think_prefix_and_im_end_suffix():
    text = ("<think>\nLet me look. Score: 1. Summary: nothing\n1. Text Faithfulness: 1\n</think>\n"
            + T2I_FULL + "<|im_end|>")
    c = parse_critique(text)
    assert scores(c) == T2I_FULL_SCORES
    assert "<|im_end|>" not in c.refined_request
    assert c.refined_request.endswith("consistent with the sun.")
    assert c.warnings == []
    assert c.raw == text


def test_special_tokens_and_code_fence_are_stripped():
    c = parse_critique("```\n" + T2I_FULL + "```<|endoftext|>")
    assert scores(c) == T2I_FULL_SCORES
    assert c.refined_request.endswith("consistent with the sun.")


def test_crlf_line_endings():
    c = parse_critique(T2I_FULL.replace("\n", "\r\n"))
    assert scores(c) == T2I_FULL_SCORES
    assert c.warnings == []


# --- header variants ---------------------------------------------------------------------------------

def test_headers_without_numbers():
    text = T2I_FULL.replace("1. Text Faithfulness:", "Text Faithfulness:") \
        .replace("2. Physical", "Physical").replace("3. Text Rendering:", "Text Rendering:")
    c = parse_critique(text)
    assert scores(c) == T2I_FULL_SCORES
    assert c.warnings == []


def test_markdown_header_levels_and_bold():
    text = (T2I_FULL.replace("1. Text Faithfulness:", "### 1. Text Faithfulness")
            .replace("2. Physical and Visual Quality:", "### **Physical and Visual Quality**")
            .replace("3. Text Rendering:", "**3. Text Rendering:**")
            .replace("## Score: 3.5", "**Score:** 3.5")
            .replace("## Justification: The left paw", "- Justification: The left paw"))
    c = parse_critique(text)
    assert scores(c) == T2I_FULL_SCORES
    assert c.dimensions["physical_quality"].justification.startswith("The left paw")
    assert c.warnings == []


def test_section_headers_without_colons():
    text = ("# User Request Analysis\nwants a cat\n# Detailed Judgement\n"
            "### Text Faithfulness\n## Justification\nred cat\n## Score\n3\n"
            "### Physical and Visual Quality\n## Justification\nok\n## Score\n4\n"
            "### Text Rendering\n## Justification\nnone\n## Score\nN/A\n"
            "# Summary\nfine overall\n# User Request Refinement\n## Refinement Comments\nnone\n"
            "## Refined Request\na red cat\n")
    c = parse_critique(text)
    assert scores(c)["text_faithfulness"] == 3.0 and scores(c)["physical_quality"] == 4.0
    assert c.dimensions["text_rendering"].status is ScoreStatus.NA
    assert c.dimensions["text_faithfulness"].justification == "red cat"
    assert c.request_analysis == "wants a cat"
    assert c.summary == "fine overall"
    assert c.refined_request == "a red cat"
    assert c.warnings == []


def test_score_on_the_header_line():
    text = ("1. Text Faithfulness: 3\n2. Physical and Visual Quality: 2.5 (blurry paws)\n"
            "3. Text Rendering: N/A\n# Summary: short form\n## Refined Request: a cat")
    c = parse_critique(text)
    assert scores(c)["text_faithfulness"] == 3.0 and scores(c)["physical_quality"] == 2.5
    assert c.dimensions["text_rendering"].status is ScoreStatus.NA
    assert c.warnings == []


def test_inline_justification_on_the_header_line():
    text = ("1. Text Faithfulness: The cat is there but not red.\n## Score: 2\n"
            "2. Physical and Visual Quality: Clean.\n## Score: 4\n3. Text Rendering: No text.\n## Score: N/A\n")
    c = parse_critique(text)
    assert c.dimensions["text_faithfulness"].justification == "The cat is there but not red."
    assert scores(c)["text_faithfulness"] == 2.0 and scores(c)["physical_quality"] == 4.0


def test_numbered_prose_is_not_a_header():
    text = T2I_FULL.replace("## Justification: The cat is red",
                            "## Justification:\n1. text faithfulness is judged on the sign.\nThe cat is red")
    c = parse_critique(text)
    assert scores(c) == T2I_FULL_SCORES
    assert "1. text faithfulness is judged" in c.dimensions["text_faithfulness"].justification


def test_missing_dimension_headers_fall_back_to_position():
    text = ("# Detailed Judgement\n## Justification: a\n## Score: 3\n## Justification: b\n## Score: 2\n"
            "## Justification: c\n## Score: N/A\n# Summary: s\n## Refined Request: r\n")
    c = parse_critique(text)
    assert scores(c)["text_faithfulness"] == 3.0 and scores(c)["physical_quality"] == 2.0
    assert c.dimensions["text_rendering"].status is ScoreStatus.NA
    assert [c.dimensions[k].justification for k in T2I_KEYS] == ["a", "b", "c"]
    assert warned(c, "position")


def test_one_garbled_header_falls_back_to_position():
    text = T2I_FULL.replace("2. Physical and Visual Quality:", "2. Phisycal qualty:")
    c = parse_critique(text)
    assert scores(c) == T2I_FULL_SCORES
    assert warned(c, "position")


def test_duplicated_dimension_keeps_first_entry_and_does_not_shift_others():
    text = ("# Detailed Judgement\n"
            "1. Text Faithfulness:\n## Justification: good\n## Score: 3\n"
            "1. Text Faithfulness:\n## Justification: repeated\n## Score: 1\n"
            "2. Physical and Visual Quality:\n## Justification: ok\n## Score: 4\n"
            "3. Text Rendering:\n## Justification: fine\n## Score: 3.5\n# Summary: s\n## Refined Request: r\n")
    c = parse_critique(text)
    assert scores(c) == {"text_faithfulness": 3.0, "physical_quality": 4.0, "text_rendering": 3.5}
    assert [c.dimensions[k].justification for k in T2I_KEYS] == ["good", "ok", "fine"]
    assert warned(c, "Text Faithfulness", "twice")


def test_duplicated_dimension_with_inline_score_keeps_first():
    text = ("1. Text Faithfulness: 3\n2. Physical and Visual Quality: 4\n3. Text Rendering: 2\n"
            "1. Text Faithfulness: 1\n# Summary: s\n## Refined Request: r\n")
    c = parse_critique(text)
    assert scores(c) == {"text_faithfulness": 3.0, "physical_quality": 4.0, "text_rendering": 2.0}
    assert warned(c, "twice")


def test_duplicated_dimension_fills_what_the_first_entry_lacked():
    text = ("1. Text Faithfulness:\n## Justification: first\n"
            "2. Physical and Visual Quality:\n## Justification: ok\n## Score: 4\n"
            "1. Text Faithfulness:\n## Justification: second\n## Score: 2\n"
            "3. Text Rendering:\n## Justification: fine\n## Score: 3\n")
    c = parse_critique(text)
    assert scores(c) == {"text_faithfulness": 2.0, "physical_quality": 4.0, "text_rendering": 3.0}
    assert c.dimensions["text_faithfulness"].justification == "first"


def test_unexpected_dimension_in_t2i_is_ignored_with_warning():
    text = T2I_FULL.replace(
        "2. Physical and Visual Quality:",
        "2. Image Faithfulness:\n## Justification: not a T2I dimension\n## Score: 1\n"
        "3. Physical and Visual Quality:")
    c = parse_critique(text, Task.T2I)
    assert list(c.dimensions) == T2I_KEYS
    assert scores(c) == T2I_FULL_SCORES
    assert warned(c, "unexpected dimension", "Image Faithfulness")


# --- degenerate input --------------------------------------------------------------------------------

@pytest.mark.parametrize("text", ["", "   \n\t  \n", "<|im_end|>", "<think>all thinking</think>"])
def test_empty_and_whitespace(text):
    c = parse_critique(text)
    assert all(d.status is ScoreStatus.MISSING for d in c.dimensions.values())
    assert all(math.isnan(v) for v in scores(c).values())
    assert warned(c, "empty")
    assert math.isnan(c.overall())
    p = parse_pairwise(text, "edit")
    assert p.decide("strict").winner is Winner.UNDECIDED
    assert p.winner is Winner.TIE and p.totals() == (10.0, 10.0)   # published: every score counts 2.5
    assert warned(p, "empty")


def test_prose_only_answer():
    c = parse_critique("The image looks great, I would give it a 4.")
    assert all(d.status is ScoreStatus.MISSING for d in c.dimensions.values())
    for title in ("Text Faithfulness", "Physical and Visual Quality", "Text Rendering"):
        assert warned(c, title, "no score")


@pytest.mark.parametrize("bad", [None, 3, 3.5, b"## Score: 3", ["## Score: 3"], {"text": "x"}])
def test_non_string_raises_parse_error(bad):
    with pytest.raises(ParseError):
        parse_critique(bad)
    with pytest.raises(ParseError):
        parse_pairwise(bad)


def test_parse_error_is_a_value_error():
    assert issubclass(ParseError, ValueError)


def test_huge_input_is_parsed_without_hanging():
    """2 MB of pathological text (megabyte lines, long space runs, thousands of score-like lines) parses into a
    valid result. A watchdog with a generous limit turns a catastrophic regex into a failure instead of a hung
    suite; how fast it parses is measured by the benchmark (bench/critic_bench.py, ``parse_2mb``)."""
    text = huge_answer()
    assert len(text) > 2_000_000
    done: list = []
    worker = threading.Thread(target=lambda: done.append((parse_critique(text), parse_pairwise(text))), daemon=True)
    worker.start()
    worker.join(timeout=300)
    assert done, "parsing 2 MB did not finish within 300 s (catastrophic backtracking?)"
    c, p = done[0]
    assert isinstance(c, Critique) and isinstance(p, PairwiseCritique)
    for d in c.dimensions.values():
        assert d.status is not ScoreStatus.OK or 1.0 <= d.value <= 4.0


def test_huge_number_is_clamped_not_crashing():
    c = parse_critique("1. Text Faithfulness: " + "9" * 100_000)
    assert c.dimensions["text_faithfulness"].value == 4.0


# --- pairwise drift ----------------------------------------------------------------------------------

@pytest.mark.parametrize("line, winner", [
    ("Image A", Winner.A), ("image b", Winner.B), ("**Image B**", Winner.B), ("A", Winner.A), ("B", Winner.B),
    ("tie", Winner.TIE), ("Tie (both are equally good)", Winner.TIE), ("[Image A]", Winner.A),
    ("Image B (a sharper result)", Winner.B), ("B, by a wide margin", Winner.B),
    ("Image A is a bit better", Winner.A), ("Candidate B", Winner.B), ("A tie", Winner.TIE),
    ("A and B are equal", Winner.TIE), ("Image A and Image B are equally good", Winner.TIE),
    ("Both", Winner.TIE), ("Image B, because image A is blurry", Winner.B),
])
def test_pairwise_winner_spellings(line, winner):
    text = T2I_PAIR.replace("## Winner: Image A\n2.", f"## Winner: {line}\n2.")
    p = parse_pairwise(text)
    assert p.dimensions["text_faithfulness"].stated_winner is winner, p.warnings


def test_pairwise_unreadable_winner_falls_back_to_scores():
    text = T2I_PAIR.replace("## Winner: Image A\n2.", "## Winner: hard to say\n2.")
    p = parse_pairwise(text)
    tf = p.dimensions["text_faithfulness"]
    assert tf.stated_winner is None
    assert tf.winner is Winner.A   # 3.5 vs 2
    assert warned(p, "Text Faithfulness", "winner")


def test_pairwise_missing_winner_line_uses_scores():
    text = T2I_PAIR.replace("## Winner: Image B\n", "")
    p = parse_pairwise(text)
    assert p.dimensions["physical_quality"].stated_winner is None
    assert p.dimensions["physical_quality"].winner is Winner.B


def test_pairwise_missing_score_is_undecided():
    text = T2I_PAIR.replace("## Score B: 3.5\n", "")
    p = parse_pairwise(text)
    pq = p.dimensions["physical_quality"]
    assert pq.b is None
    assert math.isnan(p.totals("strict")[0]) and math.isnan(p.totals("strict")[1])
    assert p.decide("strict").winner is Winner.UNDECIDED
    assert p.totals() == (8.5, 2 + 2.5 + 1)            # published: the missing B score counts 2.5
    assert p.winner is Winner.A
    assert warned(p, "Physical and Visual Quality", "image B")


def test_pairwise_bracketed_and_out_of_range_scores():
    text = T2I_PAIR.replace("## Score A: 3.5", "## Score A: **[5]**").replace("## Score B: 2\n", "## Score B: 7/10\n")
    p = parse_pairwise(text)
    tf = p.dimensions["text_faithfulness"]
    assert tf.a.value == 4.0
    assert tf.b.status is ScoreStatus.MISSING
    assert warned(p, "outside 1-4") and warned(p, "not on the 1-4 scale")
    assert p.decide("strict").winner is Winner.UNDECIDED
    assert p.totals() == (4 + 3 + 2, 2.5 + 3.5 + 1)     # published: clamped 4, the unreadable 7/10 counts 2.5


@pytest.mark.parametrize("a_label, b_label", [
    ("Score (Image A)", "Score (Image B)"), ("Score (A)", "Score (B)"), ("Score for Image A", "Score for Image B"),
    ("Image A Score", "Image B Score"), ("**Score A**", "**Score B**")])
def test_pairwise_score_label_spellings(a_label, b_label):
    text = T2I_PAIR.replace("## Score A:", f"## {a_label}:").replace("## Score B:", f"## {b_label}:")
    p = parse_pairwise(text)
    assert p.totals() == (8.5, 6.5), p.warnings
    assert p.warnings == []


def test_pairwise_na_in_dimension_that_forbids_it():
    text = EDIT_PAIR.replace("## Score A: 2\n", "## Score A: N/A\n")
    p = parse_pairwise(text, "edit")
    assert p.dimensions["image_faithfulness"].a.status is ScoreStatus.MISSING
    assert warned(p, "Image Faithfulness (A)", "N/A")


def test_pairwise_duplicated_dimension_does_not_shift():
    dup = ("1. Text Faithfulness:\n## Justification: again\n## Score A: 1\n## Score B: 1\n## Winner: tie\n")
    text = T2I_PAIR.replace("2. Physical and Visual Quality:", dup + "2. Physical and Visual Quality:")
    p = parse_pairwise(text)
    assert p.totals() == (8.5, 6.5)
    assert p.dimensions["text_faithfulness"].stated_winner is Winner.A
    assert warned(p, "twice")


def test_pairwise_headers_missing_positional():
    body = "\n".join(line for line in T2I_PAIR.splitlines() if not line[:1].isdigit())
    p = parse_pairwise(body)
    assert p.totals() == (8.5, 6.5)
    assert warned(p, "position")


# --- properties --------------------------------------------------------------------------------------

REAL_LINES = sorted({line for text in (T2I_FULL, EDIT_FULL, T2I_PAIR, EDIT_PAIR, T2I_PAIR_PUBLISHED, T2I_SCORE_FIRST)
                     for line in text.splitlines()}
                    | {"## Score: N/A", "## Score: 7/10", "## Score: 5", "## Score: 0", "## Score: **3**",
                       "1. Text Faithfulness: 3", "### Text Rendering", "<think>", "</think>", "<|im_end|>",
                       "## Score A: [3.5]", "## Winner: Image B (a sharper result)", "# Summary", "N.A.",
                       "## Refined Request:", "4. Image Faithfulness:", "## Score: 99999999999999999999999",
                       "## Winner: [N/A or Image A or Image B or It's a tie]", "## Score: [ float score ]",
                       "## Winner: n/a", "<think>partial"})
JUNK = st.text(alphabet=st.characters(codec="utf-8"), max_size=40)
LINE = st.one_of(st.sampled_from(REAL_LINES), JUNK,
                 st.builds(lambda a, b: a + b, st.sampled_from(REAL_LINES), JUNK),
                 st.builds(lambda a, b: a + b, JUNK, st.sampled_from(REAL_LINES)))
ASSEMBLED = st.lists(LINE, max_size=60).map("\n".join)
PERMUTED = st.sampled_from([T2I_FULL, EDIT_FULL, T2I_PAIR, EDIT_PAIR, T2I_PAIR_PUBLISHED, T2I_SCORE_FIRST]).flatmap(
    lambda t: st.permutations(t.splitlines())).map("\n".join)

PROPS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _check_invariants(text: str) -> None:
    for task in (Task.T2I, Task.EDIT):
        c = parse_critique(text, task)
        assert isinstance(c, Critique)
        for d in c.dimensions.values():
            if d.status is ScoreStatus.OK:
                assert 1.0 <= d.value <= 4.0
                assert d.score == d.value
            else:
                assert math.isnan(d.value)
                assert d.score is None
        for weights in ("equal", "rl_edit"):
            o = c.overall(weights)
            assert math.isnan(o) or 0.0 <= o <= 1.0
        import json
        json.dumps(c.to_dict(), allow_nan=False)
        c.report()
        p = parse_pairwise(text, task)
        assert isinstance(p, PairwiseCritique)
        for d in p.dimensions.values():
            for side in (d.a, d.b):
                if side is not None and side.status is ScoreStatus.OK:
                    assert 1.0 <= side.value <= 4.0
                elif side is not None:
                    assert math.isnan(side.value)
            assert isinstance(d.winner, Winner)
        ta, tb = p.totals()
        assert 0 < ta <= 16 and 0 < tb <= 16                 # published: always decides
        assert p.winner in (Winner.A, Winner.B, Winner.TIE)
        sa, sb = p.totals("strict")
        assert (math.isnan(sa) and math.isnan(sb)) or (sa, sb) == (ta, tb)
        assert isinstance(p.decide("strict").winner, Winner)
        json.dumps(p.to_dict(), allow_nan=False)


@PROPS
@given(st.text())
def test_property_any_text(text):
    _check_invariants(text)


@PROPS
@given(ASSEMBLED)
def test_property_assembled_lines(text):
    _check_invariants(text)


@PROPS
@given(PERMUTED)
def test_property_permuted_real_answers(text):
    _check_invariants(text)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(["", "#", "##", "###", "**", "- ", "1. ", "3) "]),
       st.sampled_from(["Score", "SCORE", "score a", "Score B", "Winner", "Summary", "Refined Request",
                        "Text Faithfulness", "Text Rendering", "Justification"]),
       st.sampled_from(["", ":", "：", " :", "**:**"]),
       st.text(max_size=20))
def test_property_header_shapes(prefix, label, colon, rest):
    _check_invariants(f"{prefix}{label}{colon} {rest}")


@pytest.mark.parametrize("text", ["## \u017fcore: 3", "\u017fummary: x", "## Refined Reque\u017ft: x",
                                  "\u212a", "1. Text Faithfulne\u017f\u017f: 3", "## SCORE: 3", "\u0130"])
def test_unicode_case_folding_does_not_crash(text):
    _check_invariants(text)


def test_refined_request_keeps_prompt_lines_that_look_like_labels():
    text = ("1. Text Faithfulness:\n## Justification: ok\n## Score: 3\n# Summary: fine\n"
            "## Refined Request: a shop front at night,\nText rendering: the sign reads \"OPEN\" in neon,\n"
            "Score: none of the letters touch")
    crit = parse_critique(text)
    assert crit.refined_request == ('a shop front at night,\nText rendering: the sign reads "OPEN" in neon,\n'
                                    "Score: none of the letters touch")
    assert crit.score("text_faithfulness") == 3.0 and crit.dimensions["text_rendering"].status.value == "missing"
    # a marked header still ends it
    assert parse_critique(text + "\n# Summary: late summary").refined_request.endswith("touch")


def test_pairwise_scores_on_one_line_are_both_read():
    text = ("1. Text Faithfulness:\n## Justification: A follows the prompt\n## Score A: 3.5 | Score B: 2 | Winner: Image A\n"
            "2. Physical and Visual Quality:\n## Justification: same\nScore A: 3; Score B: 3; Winner: tie\n"
            "3. Text Rendering:\n## Justification: none\n## Score A: N/A | Score B: N/A\n## Winner: tie")
    result = parse_pairwise(text)
    tf = result.dimensions["text_faithfulness"]
    assert (tf.a.value, tf.b.value, tf.winner.value) == (3.5, 2.0, "A")
    assert result.dimensions["physical_quality"].winner.value == "tie"
    assert result.totals() == (3.5 + 3 + 2.5, 2 + 3 + 2.5) and result.warnings == []
    # prose with a bar stays prose
    crit = parse_critique("1. Text Faithfulness:\n## Justification: red | blue is wrong\n## Score: 2")
    assert crit.dimensions["text_faithfulness"].justification == "red | blue is wrong"


# --- the published pairwise layout: N/A winners, "It's a tie", both rules ----------------------------------

def test_published_pairwise_na_winner_and_tie():
    p = parse_pairwise(T2I_PAIR_PUBLISHED)
    assert p.warnings == []
    assert [d.stated_winner for d in p.dimensions.values()] == [Winner.TIE, Winner.B, Winner.NA]
    assert p.dimensions["text_rendering"].winner is Winner.NA          # no winner, never Image A
    assert p.dimensions["text_rendering"].a.status is ScoreStatus.NA
    for rule in ("published", "strict"):
        assert p.totals(rule) == (8.5, 9.5)
        assert p.decide(rule).winner is Winner.B
    assert p.to_dict()["dimensions"][2]["winner"] == "N/A"


@pytest.mark.parametrize("line", ["N/A", "n/a", "**N/A**", "[N/A]", "N/A (no text requested)", "NA", "N.A.",
                                  "Not applicable", "None", "n / a", "N/A - neither image has text"])
def test_pairwise_na_winner_is_never_image_a(line):
    text = T2I_PAIR_PUBLISHED.replace("## Winner: N/A", f"## Winner: {line}")
    p = parse_pairwise(text)
    assert p.dimensions["text_rendering"].stated_winner is Winner.NA, p.warnings
    assert p.dimensions["text_rendering"].winner is not Winner.A


@pytest.mark.parametrize("line", ["It's a tie", "it's a tie.", "It is a tie", "**It's a tie**", "[It's a tie]",
                                  "It’s a tie"])
def test_pairwise_its_a_tie(line):
    text = T2I_PAIR_PUBLISHED.replace("## Winner: It's a tie", f"## Winner: {line}")
    assert parse_pairwise(text).dimensions["text_faithfulness"].stated_winner is Winner.TIE


def test_pairwise_copied_placeholder_is_not_a_verdict():
    text = T2I_PAIR_PUBLISHED.replace("## Winner: Image B", "## Winner: [Image A or Image B or It's a tie]")
    p = parse_pairwise(text)
    pq = p.dimensions["physical_quality"]
    assert pq.stated_winner is None and pq.winner is Winner.B          # falls back to the scores
    assert warned(p, "Physical and Visual Quality", "winner")


def test_pairwise_missing_scores_under_both_rules():
    text = T2I_PAIR_PUBLISHED.replace("## Score A: 2.5\n", "").replace("## Score B: 3.5\n## Winner: It's a tie",
                                                                       "## Score B: lots\n## Winner: It's a tie")
    p = parse_pairwise(text)
    assert warned(p, "Physical and Visual Quality", "image A") and warned(p, "Text Faithfulness (B)", "no number")
    published = p.decide("published")
    assert (published.total_a, published.total_b) == (3.5 + 2.5 + 2.5, 2.5 + 3.5 + 2.5)
    assert published.winner is Winner.TIE
    assert "Physical and Visual Quality (A): unreadable, counted as 2.5" in published.filled
    strict = p.decide("strict")
    assert strict.winner is Winner.UNDECIDED and math.isnan(strict.total_a)


def test_score_before_justification_without_analysis():
    c = parse_critique(T2I_SCORE_FIRST)
    assert scores(c) == T2I_SCORE_FIRST_SCORES
    assert c.dimensions["text_faithfulness"].justification == "The cat is there but the sign is missing."
    assert c.dimensions["text_rendering"].justification == "The sign text is absent."
    assert c.request_analysis is None
    assert c.refined_request == 'A red cat holding a wooden sign\nthat reads "HELLO" in block letters.'
    assert c.warnings == []


def test_score_before_justification_without_headers_is_positional():
    body = "\n".join(line for line in T2I_SCORE_FIRST.splitlines() if not line[:1].isdigit())
    c = parse_critique(body)
    assert scores(c) == T2I_SCORE_FIRST_SCORES
    assert c.dimensions["physical_quality"].justification == "Clean, one soft shadow."
    assert warned(c, "position")


def test_unclosed_think_block_reads_no_draft_scores():
    c = parse_critique("<think>\nDraft:\n1. Text Faithfulness:\n## Score: 4\n## Score: 4\n## Score: 4")
    assert all(d.status is ScoreStatus.MISSING for d in c.dimensions.values())
    assert warned(c, "<think>")
    p = parse_pairwise("<think>\n## Score A: 4\n## Score B: 1\n## Winner: Image A")
    assert all(d.a is None and d.b is None for d in p.dimensions.values())
    assert warned(p, "<think>")


def test_several_think_blocks_keep_the_last_answer():
    text = "<think>one</think>\nignored draft: Score: 1\n<think>two</think>\n" + T2I_FULL
    assert scores(parse_critique(text)) == T2I_FULL_SCORES


WINNER_WORDS = st.sampled_from(["Image A", "Image B", "A", "B", "tie", "It's a tie", "N/A", "n/a", "NA", "none",
                                "[N/A or Image A or Image B or It's a tie]", "both", "neither", ""])


@PROPS
@given(WINNER_WORDS, st.text(max_size=30))
def test_property_na_winner_lines(word, tail):
    """Whatever follows it, a Winner line that opens with N/A is no winner; any line yields a Winner or None."""
    text = T2I_PAIR_PUBLISHED.replace("## Winner: N/A", f"## Winner: {word} {tail}")
    p = parse_pairwise(text)
    w = p.dimensions["text_rendering"].stated_winner
    assert w is None or isinstance(w, Winner)
    if word.lower() in ("n/a", "na", "none") and not any(c in tail for c in ("\n", "\r", "think>")):
        assert w is Winner.NA
    _check_invariants(text)
