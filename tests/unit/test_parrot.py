"""PARROT end to end on a synthetic preference set, with scripted teachers that hit every branch.

The main run goes through the server backend against the fake OpenAI peer (answers chosen per phase,
case and side from the request text); a smaller run goes through the in-process tiny critic and the
replay seam (models/script.py). Both write the same phase files.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from rationalrewards.toolkit import parrot
from rationalrewards.backends.base import GenerationOptions
from rationalrewards.backends.openai_server import OpenAIServerBackend
from rationalrewards.toolkit.cli import main
from rationalrewards.critic.critic import Critic
from rationalrewards.toolkit.preferences import ManifestError, normalize_label, read_manifest
from tests.fixtures.fake_openai import FakeOpenAI
from tests.unit import parrot_data

EXPECTED_DROPS = {
    "anchor": {parrot.TIE_LABEL: 1, parrot.ANCHOR_UNREADABLE: 1, parrot.ANCHOR_CONTRADICTS: 1},
    "filter": {parrot.NOT_RECOVERED: 1, parrot.CONSISTENCY_UNREADABLE: 1},
    "project": {parrot.PROJECTION_CONTRADICTS: 2, parrot.PROJECTION_UNREADABLE: 1},
}


@pytest.fixture
def manifest(tmp_path) -> Path:
    return parrot_data.write_manifest(tmp_path / "data")


def _server_teacher(peer: FakeOpenAI) -> parrot.Teacher:
    backend = OpenAIServerBackend(peer.url, "critic", max_concurrency=4, backoff_s=0.0)
    return parrot.Teacher(Critic(backend=backend, name="fake-32b"), GenerationOptions(max_new_tokens=64))


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_every_phase_with_a_server_teacher_counts_each_branch(manifest, tmp_path):
    out = tmp_path / "run"
    with FakeOpenAI(answer=parrot_data.answer_for_body) as peer:
        summary = parrot.run(read_manifest(manifest), out, _server_teacher(peer))
        calls = len(peer.chat_requests())
        bodies = [r.body for r in peer.chat_requests()]
    assert summary.pairs == 10
    for name, drops in EXPECTED_DROPS.items():
        assert summary.phase(name).dropped == drops, name
    anchor, filt, project = (summary.phase(n) for n in ("anchor", "filter", "project"))
    assert (anchor.considered, anchor.kept) == (10, 7)
    assert (filt.considered, filt.kept) == (7, 5) and math.isclose(filt.kept_fraction, 5 / 7)
    assert (project.considered, project.kept) == (10, 7)
    assert calls == 9 + 7 + 10 == anchor.asked + filt.asked + project.asked   # the tie label never costs a call
    assert summary.exported == {"pairwise": 5, "pointwise": 7}
    text = summary.text()
    assert "71.4% kept" in text and parrot.NOT_RECOVERED in text and parrot.PROJECTION_CONTRADICTS in text
    assert "consistency filter: 5 of 9 labelled (55.6%)" in text

    # the anchored prompt tells the label; the consistency prompt does not, and hides the scores
    anchored = [b for b in bodies if "preferred Image" in parrot_data._body_text(b)]
    consistency = [parrot_data._body_text(b) for b in bodies
                   if "Another judge has already examined" in parrot_data._body_text(b)]
    assert any("preferred Image B" in parrot_data._body_text(b) for b in anchored)
    assert consistency and all("preferred" not in t and "Score A: 3.5" not in t and "sharper" in t
                               for t in consistency)
    # every phase file keeps the raw teacher answers; the decisions sit beside it
    raw = {r["key"]: r for r in _jsonl(out / "consistency.jsonl")}
    recs = {r["key"]: r for r in _jsonl(out / "consistency.decisions.jsonl")}
    assert recs["bravo"]["reason"] == parrot.NOT_RECOVERED and raw["bravo"]["raw"].startswith("# Detailed")
    assert recs["alpha"]["kept"] is True and raw["alpha"]["teacher"] == "fake-32b"
    assert set(raw) == set(recs) == {"alpha", "bravo", "charlie", "delta", "foxtrot", "hotel", "juliet"}
    proj = {r["key"]: r for r in _jsonl(out / "projection.decisions.jsonl")}
    assert proj["delta:A"]["contradicts"] and proj["foxtrot:A"]["reason"] == parrot.PROJECTION_UNREADABLE
    assert proj["foxtrot:B"]["kept"]
    assert json.loads((out / "summary.json").read_text())["exported"] == {"pairwise": 5, "pointwise": 7}


def test_rerun_with_other_thresholds_asks_the_teacher_nothing(manifest, tmp_path):
    out = tmp_path / "run"
    pairs = read_manifest(manifest)
    with FakeOpenAI(answer=parrot_data.answer_for_body) as peer:
        parrot.run(pairs, out, _server_teacher(peer))
        first = len(peer.chat_requests())
    # no teacher at all: every answer is read back; a margin of 1 drops "charlie" (won by 0.5), and
    # keeping contradicting projections brings "delta" back
    summary = parrot.run(pairs, out, None, parrot.ParrotConfig(margin=1.0, drop_contradicting=False))
    assert first == 26
    assert summary.phase("filter").dropped[parrot.BELOW_MARGIN] == 1
    assert summary.phase("filter").kept == 4
    assert parrot.PROJECTION_CONTRADICTS not in summary.phase("project").dropped
    assert all(p.asked == 0 for p in summary.phases) and summary.phase("anchor").reused == 9
    decisions = {r["key"]: r for r in _jsonl(out / "consistency.decisions.jsonl")}
    assert decisions["charlie"]["reason"] == parrot.BELOW_MARGIN and decisions["charlie"]["win_margin"] == 0.5
    # a lower margin keeps more pairs again, whose projections are already saved: still no new call
    again = parrot.run(pairs, out, None, parrot.ParrotConfig(margin=0.0))
    assert again.phase("filter").kept == 5 and all(p.asked == 0 for p in again.phases)


def test_new_answers_without_a_teacher_are_a_clear_error(manifest, tmp_path):
    with pytest.raises(parrot.TeacherNeeded, match="--server URL"):
        parrot.run(read_manifest(manifest), tmp_path / "run", None)


def test_a_crash_mid_phase_resumes_from_the_saved_answers(manifest, tmp_path):
    out = tmp_path / "run"
    pairs = read_manifest(manifest)
    with FakeOpenAI(answer=parrot_data.answer_for_body) as peer:
        parrot.run(pairs, out, _server_teacher(peer), phases=["anchor"])
        assert len(peer.chat_requests()) == 9
        lines = (out / "anchored.jsonl").read_text().splitlines()
        (out / "anchored.jsonl").write_text("\n".join(lines[:4]) + "\n" + lines[4][:30])   # cut mid-line
        summary = parrot.run(pairs, out, _server_teacher(peer), config=parrot.ParrotConfig(chunk=2))
        assert len(peer.chat_requests()) == 9 + 5 + 7 + 10
    assert summary.phase("anchor").reused == 4 and summary.phase("anchor").asked == 5
    assert summary.exported == {"pairwise": 5, "pointwise": 7}


def test_export_loads_in_datasets_and_matches_the_llamafactory_layout(manifest, tmp_path):
    import datasets
    out = tmp_path / "run"
    with FakeOpenAI(answer=parrot_data.answer_for_body) as peer:
        parrot.run(read_manifest(manifest), out, _server_teacher(peer), parrot.ParrotConfig(link="symlink"))
    export = out / "export"
    info = json.loads((export / "dataset_info.json").read_text())
    entry = info[parrot.DATASET_NAME]
    assert entry["formatting"] == "sharegpt"
    assert entry["columns"] == {"messages": "messages", "images": "images"}
    assert entry["tags"]["user_tag"] == "user" and entry["tags"]["assistant_tag"] == "assistant"

    lf = datasets.load_dataset("json", data_files=str(export / entry["file_name"]), split="train",
                               cache_dir=str(tmp_path / "hf-cache"))
    assert len(lf) == 12
    for row in lf:
        roles = [m["role"] for m in row["messages"]]
        assert roles in (["user", "assistant"], ["system", "user", "assistant"])
        user = next(m["content"] for m in row["messages"] if m["role"] == "user")
        assert user.count("<image>") == len(row["images"]) >= 1
        assert all((export / p).is_file() and (export / p).is_symlink() for p in row["images"])
        assert not any(word in user for word in ("preferred", "Another judge", "judged before"))  # label-free
        answer = row["messages"][-1]["content"]
        assert answer.startswith("# Detailed Judgement")
    edit = [row for row in lf if "juliet" in row["messages"][-2]["content"]]
    assert sorted(len(r["images"]) for r in edit) == [2, 2, 3]      # two pointwise (source + edit), one pairwise

    trl = datasets.load_dataset("json", data_files=str(export / "trl.jsonl"), split="train",
                                cache_dir=str(tmp_path / "hf-cache"))
    assert len(trl) == 12 and {"prompt", "completion", "images"} <= set(trl.column_names)
    for row in trl:
        assert [m["role"] for m in row["completion"]] == ["assistant"]
        parts = row["prompt"][-1]["content"]
        assert sum(p["type"] == "image" for p in parts) == len(row["images"])
    # the student learns what it will be asked: the pointwise prompt is exactly the critic's template
    from rationalrewards.toolkit.parrot import student_request
    from rationalrewards.judging.rubric import Task
    pointwise = next(r for r in lf if "alpha" in r["messages"][-2]["content"] and len(r["images"]) == 1)
    req = student_request(Task.T2I, "pointwise", "a red cat alpha")
    assert pointwise["messages"][-2]["content"] == "".join("<image>" if k == "image" else p for k, p in req.parts)


def test_in_process_teacher_through_the_replay_seam(qwen3_critic, tmp_path):
    """The tiny critic forced by a script (modes anchored/consistency/projection): same decisions."""
    data = tmp_path / "data"
    manifest = parrot_data.write_manifest(data)
    keep = {"alpha", "bravo"}
    rows = [line for line in manifest.read_text().splitlines() if json.loads(line)["id"] in keep]
    manifest.write_text("\n".join(rows) + "\n")
    teacher = parrot.Teacher(qwen3_critic.with_script(parrot_data.script()),
                             GenerationOptions(max_new_tokens=400, temperature=0.0))
    summary = parrot.run(read_manifest(manifest), tmp_path / "run", teacher)
    assert summary.phase("filter").dropped == {parrot.NOT_RECOVERED: 1}
    assert summary.exported == {"pairwise": 1, "pointwise": 2}
    raw = _jsonl(tmp_path / "run" / "anchored.jsonl")
    assert {r["key"]: r["raw"] for r in raw}["alpha"] == parrot_data.CASES["alpha"][1]   # decoded by the model


def test_cli_runs_the_phases_and_prints_the_summary(manifest, tmp_path, capsys):
    out = tmp_path / "run"
    with FakeOpenAI(answer=parrot_data.answer_for_body) as peer:
        rc = main(["parrot", str(manifest), "--out", str(out), "--server", peer.url, "--model", "critic",
                   "--margin", "1", "--kinds", "pointwise", "--max-new-tokens", "64"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "filter   4/7 kept" in text and parrot.BELOW_MARGIN in text and "5 pointwise record(s)" in text
    assert main(["parrot", str(manifest), "--out", str(out), "--phases", "export"]) == 0   # no teacher needed
    with pytest.raises(SystemExit, match="unknown phase"):
        main(["parrot", str(manifest), "--out", str(out), "--phases", "anchr"])


def test_a_benchmark_file_goes_through_the_phases_like_its_manifest(manifest, tmp_path, capsys):
    """--format reads the preference set with the eval readers: embedded images land once in OUT/images/,
    an unlabelled pair is left out (and said), and the phases count exactly what the manifest run counts."""
    pytest.importorskip("pyarrow")
    data = parrot_data.write_mmrb2(tmp_path / "bench")
    out = tmp_path / "run"
    with FakeOpenAI(answer=parrot_data.answer_for_body) as peer:
        rc = main(["parrot", str(data), "--format", "mmrb2", "--out", str(out), "--server", peer.url,
                   "--model", "critic", "--max-new-tokens", "64"])
        calls = len(peer.chat_requests())
    assert rc == 0
    captured = capsys.readouterr()
    assert "pair kilo left out: no preference label" in captured.err and "1 of 11 mmrb2 pair(s)" in captured.err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["pairs"] == 10 and summary["exported"] == {"pairwise": 5, "pointwise": 7}
    assert calls == 9 + 7 + 10
    images = sorted((out / "images").glob("*.png"))
    assert len(images) == 21                          # 10 pairs x 2 + the edit's source, each written once
    records = json.loads((out / "export" / f"{parrot.DATASET_NAME}.json").read_text())
    assert all(len(r["images"]) == json.dumps(r["messages"]).count("<image>") for r in records)
    juliet = sorted(len(r["images"]) for r in records if "juliet" in json.dumps(r["messages"]))
    assert juliet == [2, 2, 3]                        # the edit keeps its source: 2 pointwise + 1 pairwise
    # a rerun reads the same pairs (same ids, same image files) and asks the teacher nothing
    assert main(["parrot", str(data), "--format", "mmrb2", "--out", str(out)]) == 0
    assert sorted((out / "images").glob("*.png")) == images
    with pytest.raises(SystemExit, match="--task goes with --format"):
        main(["parrot", str(manifest), "--task", "edit", "--out", str(out)])
    with pytest.raises(SystemExit, match="rationalrewards parrot: .*no column"):
        main(["parrot", str(data), "--format", "genai-bench", "--out", str(tmp_path / "x")])


def test_manifest_reader_csv_labels_and_errors(tmp_path):
    from PIL import Image
    for name in ("a.png", "b.png"):
        Image.new("RGB", (16, 16)).save(tmp_path / name)
    csv = tmp_path / "m.csv"
    csv.write_text("prompt,image_a,image_b,preferred\na fox,a.png,b.png,rightvote\na dog,a.png,b.png,Tie\n")
    pairs = read_manifest(csv)
    assert [p.preferred for p in pairs] == ["B", "tie"] and pairs[0].image_a == tmp_path / "a.png"
    assert pairs[0].id != pairs[1].id and pairs[0].task.value == "t2i"
    assert [normalize_label(v) for v in ("left", "model_2", "A>B", "draw", "??")] == ["A", "B", "A", "tie", None]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "x", "image_a": "a.png", "image_b": "missing.png", "preferred": "A"}))
    with pytest.raises(ManifestError, match="image_b .*missing.png does not exist"):
        read_manifest(bad)
    bad.write_text(json.dumps({"prompt": "x", "image_a": "a.png", "image_b": "b.png", "preferred": "maybe"}))
    with pytest.raises(ManifestError, match="use A, B or tie"):
        read_manifest(bad)
