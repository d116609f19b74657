"""The headless CLI runs the same core: critique to JSONL with the tiny model, parse a saved answer."""
from __future__ import annotations

import json
import math

from PIL import Image

from rationalrewards.toolkit.cli import main


def test_parse_command_prints_scores_and_flags_incomplete(tmp_path, capsys):
    good = tmp_path / "good.txt"
    good.write_text("1. Text Faithfulness:\n## Justification: a\n## Score: 3\n2. Physical and Visual Quality:\n"
                    "## Justification: b\n## Score: 4\n3. Text Rendering:\n## Justification: c\n## Score: N/A\n"
                    "# Summary: s\n## Refined Request: better")
    assert main(["parse", str(good)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [d["score"] for d in data["dimensions"]] == [3.0, 4.0, None]
    assert math.isclose(data["overall"], (3.5 - 1) / 3)
    bad = tmp_path / "bad.txt"
    bad.write_text("nothing useful")
    assert main(["parse", str(bad)]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["overall"] is None and data["reward_rule"]["unreadable"] == "nan"
    assert main(["parse", str(bad), "--unreadable", "zero"]) == 1      # still incomplete: the exit code says so
    data = json.loads(capsys.readouterr().out)
    assert data["overall"] == 0.0 and data["reward_rule"]["unreadable"] == "zero"


def test_critique_command_writes_one_json_line_per_image(tiny_models_dir, tmp_path):
    root, name = tiny_models_dir, "tiny-qwen3vl"
    paths = []
    for i in range(2):
        p = tmp_path / f"img{i}.png"
        Image.new("RGB", (64, 64), (40 * i, 90, 200)).save(p)
        paths.append(str(p))
    out = tmp_path / "out.jsonl"
    rc = main(["critique", *paths, "--prompt", "a blue square", "--model", name, "--models-dir", str(root),
               "--max-new-tokens", "8", "--out", str(out)])
    assert rc == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["image"] for line in lines] == paths
    assert all(line["prompt"] == "a blue square" and line["task"] == "t2i" for line in lines)


def test_critique_writes_the_same_record_on_the_in_process_and_the_server_path(tiny_models_dir, tmp_path):
    """One shape on every path: the same keys (template, template_hash, template_source, image_size ...) and,
    for the same scripted answer, the same critique, whether the critic is in-process or served."""
    from tests.fixtures.fake_openai import FakeOpenAI
    from tests.unit.rr_sample_answers import T2I_FULL

    img = tmp_path / "img.png"
    Image.new("RGB", (64, 64), (40, 90, 200)).save(img)
    script = tmp_path / "script.json"
    script.write_text(json.dumps([{"answer": T2I_FULL, "mode": "pointwise"}]))
    common = ["critique", str(img), "--prompt", "a blue square", "--replay", str(script), "--temperature", "0",
              "--max-new-tokens", "600", "--max-pixels", "4096"]
    local, served = tmp_path / "local.jsonl", tmp_path / "served.jsonl"
    assert main([*common, "--model", "tiny-qwen3vl", "--models-dir", str(tiny_models_dir), "--out", str(local)]) == 0
    with FakeOpenAI() as peer:
        assert main([*common, "--server", peer.url, "--model", "critic", "--out", str(served)]) == 0
    a, b = (json.loads(p.read_text()) for p in (local, served))   # one line each
    assert set(a) == set(b) and {"template", "template_hash", "template_source", "image_size", "model"} <= set(a)
    assert a["template_hash"] == b["template_hash"] and len(a["template_hash"]) == 12
    assert a["image_size"] == b["image_size"] == {"max_pixels": 4096, "source": "set by the user"}
    assert a["scores"] == b["scores"] and a["overall"] == b["overall"] and a["raw"] == b["raw"] == T2I_FULL
    assert (a["model"], b["model"]) == ("tiny-qwen3vl", "critic")
