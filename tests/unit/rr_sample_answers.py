"""Real-looking critic answers in the published RationalRewards layout (see
shared/design/critique-format.md), used by the parser, critique and critic tests."""

T2I_FULL = """# User Request Analysis
The user wants a red cat holding a sign that says "HELLO" in a sunny garden.
# Detailed Judgement
1. Text Faithfulness:
## Justification: The cat is red and holds a sign in a garden, but the sign is small.
## Score: 3.5
2. Physical and Visual Quality:
## Justification: The left paw has six toes and the shadow falls the wrong way.
## Score: 2.5
3. Text Rendering:
## Justification: "HELLO" is written as "HELO".
## Score: 2
# Summary: A faithful image with anatomy and spelling problems.
# User Request Refinement:
## Refinement Comments: Ask for five toes, consistent sunlight, and spell the word out.
## Refined Request: A red cat with anatomically correct paws holding a sign that reads "HELLO" in clear block \
letters, sunny garden, shadows consistent with the sun.
"""
T2I_FULL_SCORES = {"text_faithfulness": 3.5, "physical_quality": 2.5, "text_rendering": 2.0}

EDIT_FULL = """# User Request Analysis
The instruction asks to make the sky purple and keep everything else.
# Detailed Judgement
1. Text Faithfulness:
## Justification: The sky is purple as asked.
## Score: 4
2. Image Faithfulness:
## Justification: The house on the left changed colour, which was not asked.
## Score: 2.5
3. Physical and Visual Quality:
## Justification: The sky blends cleanly; a faint halo around the roof.
## Score: 3.5
4. Text Rendering:
## Justification: No text is requested.
## Score: N/A
# Summary: The edit follows the instruction but changes the house.
# User Request Refinement:
## Refinement Comments: State explicitly that the house must keep its colour.
## Refined Request: Make the sky purple; keep the house, its colour and everything else unchanged.
"""
EDIT_FULL_SCORES = {"text_faithfulness": 4.0, "image_faithfulness": 2.5, "physical_quality": 3.5}

T2I_PAIR = """# Detailed Judgement
1. Text Faithfulness:
## Justification: Both show the red cat; Image B misses the sign.
## Score A: 3.5
## Score B: 2
## Winner: Image A
2. Physical and Visual Quality:
## Justification: Image A has a six-toed paw; Image B is clean.
## Score A: 3
## Score B: 3.5
## Winner: Image B
3. Text Rendering:
## Justification: Image A spells HELO, Image B has no sign.
## Score A: 2
## Score B: 1
## Winner: Image A
# Summary: Image A is better overall because it follows the request.
"""
# totals: A = 3.5 + 3 + 2 = 8.5, B = 2 + 3.5 + 1 = 6.5

EDIT_PAIR = """# Detailed Judgement
1. Text Faithfulness:
## Justification: Both make the sky purple.
## Score A: 4
## Score B: 4
## Winner: tie
2. Image Faithfulness:
## Justification: Edit A changes the house; edit B keeps it.
## Score A: 2
## Score B: 4
## Winner: Image B
3. Physical and Visual Quality:
## Justification: Both are clean.
## Score A: 3.5
## Score B: 3.5
## Winner: tie
4. Text Rendering:
## Justification: No text requested.
## Score A: N/A
## Score B: N/A
## Winner: tie
# Summary: Image B is better: it keeps the house.
"""
# totals: A = 4 + 2 + 3.5 + 2.5 = 12, B = 4 + 4 + 3.5 + 2.5 = 14


def t2i_answer(tf="3.5", pq="2.5", tr="2", refined="a red cat") -> str:
    """A compact T2I answer with the given score texts."""
    return ("# User Request Analysis\nwants a cat\n# Detailed Judgement\n"
            f"1. Text Faithfulness:\n## Justification: the cat is red\n## Score: {tf}\n"
            f"2. Physical and Visual Quality:\n## Justification: minor problems\n## Score: {pq}\n"
            f"3. Text Rendering:\n## Justification: the sign text\n## Score: {tr}\n"
            "# Summary: good image\n# User Request Refinement:\n## Refinement Comments: add a hand\n"
            f"## Refined Request: {refined}")


def huge_answer() -> str:
    """Over 2 MB of pathological answer text (megabyte lines, long space runs, thousands of score-like lines):
    the parser's robustness test and the benchmark's ``parse_2mb`` share it."""
    one_mb_line = "word " * 200_000
    spaces = "\n".join([" " * 100_000] * 5)
    return ("# Detailed Judgement\n1. Text Faithfulness:\n## Justification: " + one_mb_line + "\n"
            + spaces + "\n## Score: " + " " * 100_000 + "3\n"
            + "## Winner: " + " " * 100_000 + "a\n"
            + "## Refined Request: " + "x" * 300_000 + "\n" + "Score: 3\n" * 20_000
            + "1" * 100_000 + "\n" + "a " * 50_000)


# --- answers to the shipped pairwise templates (the authors' evaluation layout) ---------------------------
# `# User Request Analysis` first, "It's a tie" and a Text Rendering winner of N/A.
T2I_PAIR_PUBLISHED = """# User Request Analysis
A red cat in a garden; no text is asked for.
# Detailed Judgement
1. Text Faithfulness:
## Justification: Both show a red cat in a garden.
## Score A: 3.5
## Score B: 3.5
## Winner: It's a tie
2. Physical and Visual Quality:
## Justification: Image A has a six-toed paw; Image B is clean.
## Score A: 2.5
## Score B: 3.5
## Winner: Image B
3. Text Rendering:
## Justification: No text is requested, so this aspect does not apply.
## Score A: N/A
## Score B: N/A
## Winner: N/A
# Summary: Image B is better: its anatomy is correct.
"""
# totals (both rules): A = 3.5 + 2.5 + 2.5 = 8.5, B = 3.5 + 3.5 + 2.5 = 9.5 -> B

# The authors' test-time tuning rubric: Score before Justification, no # User Request Analysis.
T2I_SCORE_FIRST = """# Detailed Judgement
1. Text Faithfulness:
## Score: 3
## Justification: The cat is there but the sign is missing.
2. Physical and Visual Quality:
## Score: 3.5
## Justification: Clean, one soft shadow.
3. Text Rendering:
## Score: 1.5
## Justification: The sign text is absent.
# Summary: Follows most of the request.

# User Request Refinement:
## Refinement Comments: Ask for the sign explicitly.
## Refined Request: A red cat holding a wooden sign
that reads "HELLO" in block letters.
"""
T2I_SCORE_FIRST_SCORES = {"text_faithfulness": 3.0, "physical_quality": 3.5, "text_rendering": 1.5}
