"""A synthetic preference set and a scripted PARROT teacher whose answers hit every branch.

Each pair's prompt carries a unique code word; the script's rules match it per phase (mode), and
the projection rules also match the side (``[image A]``), so one teacher answers all phases.
"""
from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from rationalrewards.critic.script import AnswerScript, Rule

T2I_DIMS = ("Text Faithfulness", "Physical and Visual Quality", "Text Rendering")
EDIT_DIMS = ("Text Faithfulness", "Image Faithfulness", "Physical and Visual Quality", "Text Rendering")


def pairwise(a: float, b: float, edit: bool = False, why: str = "the cat is sharper") -> str:
    """A pairwise answer scoring A ``a`` and B ``b`` on each scored dimension (Text Rendering N/A)."""
    dims = EDIT_DIMS if edit else T2I_DIMS
    out = ["# Detailed Judgement"]
    for i, title in enumerate(dims, 1):
        out.append(f"{i}. {title}:")
        if title == "Text Rendering":
            out += ["## Justification: no text is asked for", "## Score A: N/A", "## Score B: N/A", "## Winner: tie"]
        else:
            win = "Image A" if a > b else "Image B" if b > a else "tie"
            out += [f"## Justification: {why}", f"## Score A: {a}", f"## Score B: {b}", f"## Winner: {win}"]
    out.append(f"# Summary: {'Image A' if a > b else 'Image B'} is better because {why}")
    return "\n".join(out)


def pointwise(score: float, edit: bool = False) -> str:
    dims = EDIT_DIMS if edit else T2I_DIMS
    out = ["# Detailed Judgement"]
    for i, title in enumerate(dims, 1):
        out += [f"{i}. {title}:", "## Justification: as seen",
                f"## Score: {'N/A' if title == 'Text Rendering' else score}"]
    out += ["# Summary: fine", "# User Request Refinement:", "## Refinement Comments: none",
            "## Refined Request: a red cat"]
    return "\n".join(out)


GARBAGE = "I like both of them very much."

# code word -> (label, anchored answer, consistency answer, projection A, projection B); None = no rule
CASES = {
    "alpha":   ("A", pairwise(3.5, 2), pairwise(3.5, 2), pointwise(3.5), pointwise(2)),       # kept
    "bravo":   ("B", pairwise(2, 3.5), pairwise(3, 2), None, None),                           # not recovered
    "charlie": ("A", pairwise(3.5, 2), pairwise(3, 2.75), pointwise(3), pointwise(2.5)),      # margin 0.5
    "delta":   ("A", pairwise(3.5, 2), pairwise(3.5, 2), pointwise(2), pointwise(3.5)),       # contradicts
    "echo":    ("A", GARBAGE, None, None, None),                                              # anchor unreadable
    "foxtrot": ("B", pairwise(2, 3), pairwise(2, 3), GARBAGE, pointwise(3.5)),                # A unreadable
    "golf":    ("A", pairwise(2, 3), None, None, None),                                       # anchor contradicts
    "hotel":   ("B", pairwise(2, 3), GARBAGE, None, None),                                    # consistency unreadable
    "india":   ("tie", None, None, None, None),                                               # tie label
    "juliet":  ("A", pairwise(3.5, 2, edit=True), pairwise(4, 2, edit=True),                  # edit, kept
                pointwise(3.5, edit=True), pointwise(2, edit=True)),
}


def script() -> AnswerScript:
    rules = []
    for word, (_, anchored, consistency, proj_a, proj_b) in CASES.items():
        for mode, answer, match in (("anchored", anchored, word), ("consistency", consistency, word),
                                    ("projection", proj_a, f"{word} [image A]"),
                                    ("projection", proj_b, f"{word} [image B]")):
            if answer is not None:
                rules.append(Rule(answer, match, mode=mode))
    return AnswerScript(tuple(rules))


def write_manifest(folder: Path) -> Path:
    """Images on disk and a JSONL manifest (relative paths) for every case."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, (word, (label, *_)) in enumerate(CASES.items()):
        row = {"id": word, "prompt": f"a red cat {word}", "preferred": label}
        for side, shade in (("a", 60), ("b", 180)):
            name = f"{word}_{side}.png"
            Image.new("RGB", (32, 32), (shade, 20 * i, 90)).save(folder / name)
            row[f"image_{side}"] = name
        if word == "juliet":
            Image.new("RGB", (32, 32), (5, 5, 5)).save(folder / "juliet_src.png")
            row["source"] = "juliet_src.png"
        lines.append(json.dumps(row))
    path = folder / "manifest.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def write_mmrb2(folder: Path) -> Path:
    """The same cases as an MMRB2 parquet with the images embedded as bytes (the edit's source in
    ``prompt_images``), plus one pair whose label is no label (left out before any teacher call)."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    def cell(rgb) -> dict:
        buf = io.BytesIO()
        Image.new("RGB", (32, 32), rgb).save(buf, format="PNG")
        return {"bytes": buf.getvalue(), "path": None}

    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (word, (label, *_)) in enumerate(list(CASES.items()) + [("kilo", ("unsure",))]):
        rows.append({"pair_id": word, "prompt_text": f"a red cat {word}",
                     "prompt_images": [cell((5, 5, 5))] if word == "juliet" else [],
                     "response_a_images": [cell((60, 20 * i, 90))], "response_b_images": [cell((180, 20 * i, 90))],
                     "chosen": label})
    path = folder / "mmrb2.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def _body_text(body: dict) -> str:
    return "\n".join(part.get("text", "") for m in body.get("messages", [])
                     for part in (m["content"] if isinstance(m["content"], list) else [{"text": m["content"]}]))


def answer_for_body(body: dict) -> str:
    """The scripted teacher behind the fake OpenAI peer: the phase from its addendum, the case from the
    code word, the side from the projection context."""
    text = _body_text(body)
    word = next(w for w in CASES if f"a red cat {w}" in text)
    _, anchored, consistency, proj_a, proj_b = CASES[word]
    if "preferred Image" in text:
        answer = anchored
    elif "Another judge has already examined" in text:
        answer = consistency
    elif "judged before as Image A" in text:
        answer = proj_a
    elif "judged before as Image B" in text:
        answer = proj_b
    else:
        raise AssertionError("not a PARROT request")
    assert answer is not None, f"case {word} should not reach this phase"
    return answer
