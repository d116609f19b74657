"""rationalrewards eval: synthetic files in each benchmark format, scripted answers with a known accuracy,
both rules, both modes, resume from the answer cache, --rescore without the model."""
from __future__ import annotations

import base64
import io
import json

import pytest
from PIL import Image

from rationalrewards.toolkit.benchmarks import normalize_label, read_benchmark
from rationalrewards.toolkit.cli import main
from rationalrewards.toolkit.evaluate import bootstrap_ci
from tests.fixtures.fake_openai import FakeOpenAI
from tests.unit.toolkit_answers import pairwise_answer, pointwise_answer

pa = pytest.importorskip("pyarrow")
import pyarrow.parquet as pq  # noqa: E402

GARBAGE_Q = 7          # an image of this quality gets an unreadable answer
# (quality A, quality B, label): 7 labels agree with the scripted judge, 3 do not, one garbage pair is a tie
PAIRS = [(3, 1, "A"), (1, 4, "B"), (2, 2, "tie"), (5, 0, "A"), (0, 6, "B"), (4, 3, "A"), (2, 5, "B"),
         (6, 1, "B"), (1, 3, "A"), (3, 3, "A"), (GARBAGE_Q, GARBAGE_Q, "tie")]
CORRECT_PUBLISHED, CORRECT_STRICT, EVALUATED = 8, 7, 11


def png(q: int, blue: int = 0) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (q * 30, 0, blue)).save(buf, format="PNG")
    return buf.getvalue()


SOURCE = png(0, blue=200)


def qualities(body: dict) -> list[int]:
    urls = [p["image_url"]["url"] for p in body["messages"][-1]["content"] if p.get("type") == "image_url"]
    return [Image.open(io.BytesIO(base64.b64decode(u.split(",", 1)[1]))).getpixel((0, 0))[0] // 30 for u in urls]


def answer(body: dict) -> str:
    q = qualities(body)
    edit = _is_source(body)
    task = "edit" if edit else "t2i"
    if len(q) - edit == 2:                                  # a pairwise request
        a, b = q[-2], q[-1]
        if GARBAGE_Q in (a, b):
            return "no idea"
        return pairwise_answer({"text_faithfulness": 1 + a * 0.5}, {"text_faithfulness": 1 + b * 0.5}, task)
    if q[-1] == GARBAGE_Q:
        return "no idea"
    return pointwise_answer({"text_faithfulness": 1 + q[-1] * 0.5}, task)


def _is_source(body: dict) -> bool:
    urls = [p["image_url"]["url"] for p in body["messages"][-1]["content"] if p.get("type") == "image_url"]
    first = Image.open(io.BytesIO(base64.b64decode(urls[0].split(",", 1)[1]))).getpixel((0, 0))
    return first[2] == 200


def bad_rows() -> list[tuple]:
    """One pair with an unknown label and one with an image that is not a picture: both skipped."""
    return [(1, 2, "???"), ("broken", 1, "A")]


def cell(q) -> dict:
    return {"bytes": b"not an image" if q == "broken" else png(q), "path": None}


def write(fmt: str, folder, edit: bool = False):
    rows = PAIRS + bad_rows()
    if fmt == "mmrb2":
        table = [{"pair_id": f"p{n}", "prompt_text": f"a red square item-{n}",
                  "prompt_images": [{"bytes": SOURCE, "path": None}] if edit else [],
                  "response_a_images": [cell(a)], "response_b_images": [cell(b)], "chosen": lab}
                 for n, (a, b, lab) in enumerate(rows)]
    elif fmt == "genai-bench" and not edit:
        vote = {"A": "leftvote", "B": "rightvote", "tie": "tievote", "???": None}
        table = [{"prompt": f"item-{n}", "left_image": cell(a), "right_image": cell(b), "vote_type": vote[lab],
                  "left_model": "x", "right_model": "y"} for n, (a, b, lab) in enumerate(rows)]
    elif fmt == "genai-bench":
        vote = {"A": "leftvote", "B": "rightvote", "tie": "bothbad_vote", "???": None}
        table = [{"source_image": {"bytes": SOURCE}, "instruct_prompt": f"item-{n}", "left_output_image": cell(a),
                  "right_output_image": cell(b), "vote_type": vote[lab]} for n, (a, b, lab) in enumerate(rows)]
    else:
        rank = {"A": "model_1", "B": "model_2", "tie": "tie", "???": "unsure"}
        table = [{"instruction": f"item-{n}", "source_image": {"bytes": SOURCE, "path": None},
                  "candidate_1": cell(a), "candidate_2": cell(b), "ranking": rank[lab]}
                 for n, (a, b, lab) in enumerate(rows)]
    path = folder / f"{fmt}{'-edit' if edit else ''}.parquet"
    pq.write_table(pa.Table.from_pylist(table), path)
    return path


@pytest.fixture
def peer():
    with FakeOpenAI(answer=answer) as p:
        yield p


def run_eval(peer, data, fmt, out, *extra):
    args = ["eval", "--format", fmt, "--data", str(data), "--out", str(out), "--no-progress", "--seed", "1",
            "--bootstrap", "200", *extra]
    if peer is not None and "--rescore" not in extra:
        args += ["--server", peer.url, "--model", "critic", "--max-new-tokens", "16", "--retries", "0"]
    assert main(args) == 0
    return json.loads(out.read_text())


def test_labels_normalise_as_the_authors_adapters_do():
    assert [normalize_label(x) for x in ("a", "Left", "leftvote", 1, "model_1")] == ["A>B"] * 5
    assert [normalize_label(x) for x in ("B", "right", "rightvote", "2", "model_2")] == ["B>A"] * 5
    assert [normalize_label(x) for x in ("tie", "draw", "equal", "A=B")] == ["A=B"] * 4
    assert normalize_label("maybe") is None and normalize_label(None) is None


@pytest.mark.parametrize("fmt,edit", [("mmrb2", False), ("mmrb2", True), ("genai-bench", False),
                                      ("genai-bench", True), ("editreward-bench", True)])
def test_accuracy_is_what_the_scripted_answers_imply(fmt, edit, peer, tmp_path, capsys):
    data = write(fmt, tmp_path, edit)
    pairs = read_benchmark(fmt, data)
    assert {p.task.value for p in pairs} == {"edit" if edit else "t2i"}
    out = tmp_path / "results.json"
    res = run_eval(peer, data, fmt, out)
    c = res["counts"]
    assert (c["evaluated"], c["correct"], c["skipped"], c["failed"]) == (EVALUATED, CORRECT_PUBLISHED, 2, 0)
    assert res["accuracy"] == pytest.approx(CORRECT_PUBLISHED / EVALUATED)
    lo, hi = res["ci95"]
    assert lo <= res["accuracy"] <= hi
    assert res["confusion"]["A=B"]["A=B"] == 2 and res["confusion"]["B>A"]["A>B"] == 1
    assert res["published"]["RationalRewards-8B"] > 0
    printed = capsys.readouterr().out
    assert "published" in printed and f"{res['published']['RationalRewards-8B']:.1f}" in printed
    assert res["per_dimension"]["text_faithfulness"]["n"] == EVALUATED - 1   # the garbage pair has no winner
    # the same cache, rescored under the strict rule, without any request
    before = len(peer.chat_requests())
    strict = run_eval(None, data, fmt, tmp_path / "results.json", "--rescore", "--rule", "strict")
    assert len(peer.chat_requests()) == before
    assert strict["counts"]["correct"] == CORRECT_STRICT and strict["counts"]["undecided"] == 1
    assert strict["confusion"]["A=B"]["undecided"] == 1


def test_pointwise_mode_and_resume_from_the_cache(peer, tmp_path):
    data = write("mmrb2", tmp_path)
    out = tmp_path / "r.json"
    first = run_eval(peer, data, "mmrb2", out, "--mode", "pointwise", "--limit", "5")
    assert first["counts"]["evaluated"] == 5 and len(peer.chat_requests()) == 10     # two critiques per pair
    full = run_eval(peer, data, "mmrb2", out, "--mode", "pointwise")
    assert len(peer.chat_requests()) == 2 * EVALUATED                               # only the rest was asked
    assert full["counts"]["correct"] == CORRECT_PUBLISHED and full["mode"] == "pointwise"
    cache = [json.loads(line) for line in (tmp_path / "r.answers.jsonl").read_text().splitlines()]
    assert len(cache) == EVALUATED and len({c["key"] for c in cache}) == EVALUATED
    # pairwise answers are cached apart: switching mode asks again
    run_eval(peer, data, "mmrb2", out)
    assert len(peer.chat_requests()) == 3 * EVALUATED


def test_failed_requests_are_counted_apart_and_retried(tmp_path):
    from tests.fixtures.fake_openai import Reply
    data = write("genai-bench", tmp_path)
    out = tmp_path / "r.json"
    with FakeOpenAI(answer=answer) as peer:
        peer.script = [Reply(400, {"error": {"message": "image too large"}})]
        res = run_eval(peer, data, "genai-bench", out)
        assert res["counts"]["failed"] == 1 and res["counts"]["evaluated"] == EVALUATED - 1
        again = run_eval(peer, data, "genai-bench", out)
    assert again["counts"]["failed"] == 0 and again["counts"]["evaluated"] == EVALUATED


def test_mmrb2_older_json_release(peer, tmp_path):
    (tmp_path / "img").mkdir()
    for q in range(8):
        (tmp_path / "img" / f"{q}.png").write_bytes(png(q))
    pairs = [{"pair_id": f"j{n}", "prompt_content": [["text", f"item-{n}"]],
              "response_a": {"response_content": [["image", f"img/{a}.png"]]},
              "response_b": {"response_content": [["image", f"img/{b}.png"]]}, "chosen": lab}
             for n, (a, b, lab) in enumerate(PAIRS)]
    data = tmp_path / "mmrb2.json"
    data.write_text(json.dumps({"pairs": pairs}))
    res = run_eval(peer, data, "mmrb2", tmp_path / "r.json")
    assert res["counts"]["correct"] == CORRECT_PUBLISHED and res["task"] == "t2i"


def test_bootstrap_is_seeded():
    x = [True] * 30 + [False] * 20
    assert bootstrap_ci(x, seed=3) == bootstrap_ci(x, seed=3)
    lo, hi = bootstrap_ci(x, seed=3)
    assert lo < 0.6 < hi
