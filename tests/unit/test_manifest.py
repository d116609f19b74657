"""Critique at scale: manifests (JSONL/CSV/parquet), bad rows, resume after a kill, shards, several servers."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from rationalrewards.backends.base import GenerationOptions
from rationalrewards.toolkit.cli import main
from rationalrewards.runtime.factory import server_critics
from rationalrewards.toolkit.dispatch import Dispatcher
from rationalrewards.toolkit.manifest import (ResumableJsonl, critique_manifest, parse_shard, read_ids, read_manifest,
                                      shard_of)
from rationalrewards.critic.script import AnswerScript, Rule
from rationalrewards.critic.images import ImageError
from rationalrewards.toolkit.tables import TableError
from tests.fixtures.fake_openai import FakeOpenAI, Reply, completion
from tests.unit.toolkit_answers import pointwise_answer, tag_of

ROOT = Path(__file__).resolve().parents[2]
OPTS = GenerationOptions(max_new_tokens=16, temperature=0.0)


def scores_for(n: int) -> dict:
    return {"text_faithfulness": 1 + (n % 4), "physical_quality": 4 - (n % 3)}


def answer(body: dict) -> str:
    return pointwise_answer(scores_for(tag_of(body)))


def write_rows(folder: Path, n: int, *, bad: bool = False) -> list[dict]:
    """``n`` good rows (images as relative paths) and, with ``bad``, three broken ones."""
    (folder / "img").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        Image.new("RGB", (32, 32), (i * 9 % 256, 80, 160)).save(folder / "img" / f"{i}.png")
        rows.append({"id": f"r{i}", "image": f"img/{i}.png", "prompt": f"a blue square item-{i}"})
    if bad:
        (folder / "img" / "broken.png").write_bytes(b"not a png")
        rows += [{"id": "missing", "image": "img/nope.png", "prompt": "item-900"},
                 {"id": "broken", "image": "img/broken.png", "prompt": "item-901"},
                 {"id": "empty", "image": "img/0.png", "prompt": "  "}]
    return rows


def jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def peer():
    with FakeOpenAI(answer=answer) as p:
        yield p


def pool(*peers, **kw) -> Dispatcher:
    return Dispatcher(server_critics([p.url for p in peers], model="critic", retries=0, timeout_s=10), **kw)


# -- reading ---------------------------------------------------------------------------------------------

def test_manifest_formats_read_the_same_rows(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq
    rows = write_rows(tmp_path, 3)
    jsonl(tmp_path / "m.jsonl", rows)
    with open(tmp_path / "m.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["id", "image", "prompt"])
        w.writeheader()
        w.writerows(rows)
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "m.parquet")
    read = [[(r.id, r.image, r.prompt) for r in read_manifest(tmp_path / f"m.{ext}")]
            for ext in ("jsonl", "csv", "parquet")]
    assert read[0] == read[1] == read[2] == [(r["id"], r["image"], r["prompt"]) for r in rows]


def test_manifest_errors_name_the_problem(tmp_path):
    with pytest.raises(TableError, match="'prompt'"):
        read_manifest(jsonl(tmp_path / "a.jsonl", [{"image": "x.png"}]))
    with pytest.raises(TableError, match="id 'x' appears in rows 0 and 1"):
        read_manifest(jsonl(tmp_path / "b.jsonl", [{"id": "x", "image": "a", "prompt": "p"}] * 2))
    rows = read_manifest(jsonl(tmp_path / "c.jsonl", [{"image": "a", "prompt": "p"}] * 2))
    assert [r.id for r in rows] == ["0", "1"]        # the row number when there is no id column
    with pytest.raises(ValueError, match="K counts from 0"):
        parse_shard("4/4")


def test_shards_cover_every_row_exactly_once():
    ids = [f"row-{i}" for i in range(1000)]
    for n in (1, 2, 3, 7):
        owners = [shard_of(i, n) for i in ids]
        assert set(owners) == set(range(n))
        assert shard_of("row-5", n) == owners[5]          # stable
    counts = Counter(shard_of(i, 4) for i in ids)
    assert min(counts.values()) > 180                     # roughly balanced


# -- running ---------------------------------------------------------------------------------------------

def test_bad_rows_are_reported_and_skipped_good_rows_parsed(tmp_path, peer):
    manifest = jsonl(tmp_path / "m.jsonl", write_rows(tmp_path, 4, bad=True))
    out = tmp_path / "out.jsonl"
    logs: list[str] = []
    with pool(peer) as p:
        report = critique_manifest(manifest, out, p, options=OPTS, progress=False, log=logs.append)
    assert report.written == 4 and sorted(f["id"] for f in report.failed) == ["broken", "empty", "missing"]
    assert any("'missing' skipped" in m and "does not exist" in m for m in logs)
    records = {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert sorted(records) == ["r0", "r1", "r2", "r3"]
    for i in range(4):
        rec = records[f"r{i}"]
        assert rec["scores"]["text_faithfulness"] == scores_for(i)["text_faithfulness"]
        assert rec["states"] == {"text_faithfulness": "ok", "physical_quality": "ok", "text_rendering": "n/a"}
        assert rec["model"] == "critic" and rec["template"] == "t2i_pointwise" and rec["template_hash"]
        assert rec["image"] == f"img/{i}.png" and rec["refined_request"] == "a better prompt"
    errors = [json.loads(line) for line in Path(str(out) + ".errors.jsonl").read_text().splitlines()]
    assert {e["id"] for e in errors} == {"broken", "empty", "missing"}
    # a rerun writes nothing twice and retries only the failed rows
    n_requests = len(peer.chat_requests())
    with pool(peer) as p:
        again = critique_manifest(manifest, out, p, options=OPTS, progress=False, log=logs.append)
    assert again.written == 0 and again.already_done == 4 and len(again.failed) == 3
    assert len(peer.chat_requests()) == n_requests
    assert len(out.read_text().splitlines()) == 4


def test_partial_last_line_is_trimmed(tmp_path):
    out = tmp_path / "o.jsonl"
    out.write_bytes(b'{"id": "a"}\n{"id": "b"}\n{"id": "c", "sco')
    sink = ResumableJsonl(out)
    sink.write({"id": "c"})
    sink.close()
    assert sink.trimmed == len(b'{"id": "c", "sco')
    assert read_ids([out]) == ["a", "b", "c"]


def test_shards_over_two_servers_write_every_row_once(tmp_path):
    manifest = jsonl(tmp_path / "m.jsonl", write_rows(tmp_path, 12))
    outs = [tmp_path / f"shard{k}.jsonl" for k in range(3)]
    with FakeOpenAI(answer=answer, delay=0.02) as a, FakeOpenAI(answer=answer, delay=0.02) as b:
        with pool(a, b, max_concurrency=4) as p:
            for k, out in enumerate(outs):
                critique_manifest(manifest, out, p, options=OPTS, shard=(k, 3), progress=False)
        assert len(a.chat_requests()) > 0 and len(b.chat_requests()) > 0     # the load was spread
        assert len(a.chat_requests()) + len(b.chat_requests()) == 12
        assert a.max_in_flight + b.max_in_flight <= 4
    ids = read_ids(outs)
    assert sorted(ids) == sorted(f"r{i}" for i in range(12)) and len(ids) == len(set(ids))


def test_cli_run_killed_mid_way_resumes_without_duplicate_or_gap(tmp_path):
    n = 24
    manifest = jsonl(tmp_path / "m.jsonl", write_rows(tmp_path, n))
    out = tmp_path / "out.jsonl"
    cmd = [sys.executable, "-m", "rationalrewards.toolkit.cli", "critique", "--manifest", str(manifest), "--out", str(out),
           "--server", "", "--model", "critic", "--max-concurrency", "2", "--max-new-tokens", "16",
           "--no-progress", "--retries", "0"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    with FakeOpenAI(answer=answer) as peer:
        gate = threading.Event()
        # six answers go out at once; every later request waits on the gate, so the kill lands mid-run
        peer.script = [lambda body: Reply(body=completion(answer(body), "critic")) for _ in range(6)]
        peer.hold = gate
        cmd[cmd.index("--server") + 1] = peer.url
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 240          # a guard against a hang, not a speed requirement
            while not (out.exists() and len(out.read_bytes().splitlines()) >= 6):
                assert proc.poll() is None, proc.stderr.read().decode()
                assert time.monotonic() < deadline, "the run never wrote six lines"
                time.sleep(0.02)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        first = read_ids([out])
        assert len(first) == 6
        with open(out, "ab") as f:               # as if the kill had cut a line in half
            f.write(b'{"id": "r999", "scores": {"text_fa')
        peer.hold = None
        gate.set()
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        assert "removed a partial last line" in done.stderr
    ids = read_ids([out])
    assert sorted(ids) == sorted(f"r{i}" for i in range(n)) and len(ids) == n
    assert ids[:len(first)] == first


def test_in_process_critic_with_replayed_answers(tmp_path, qwen3_critic):
    rows = write_rows(tmp_path, 3, bad=True)
    manifest = jsonl(tmp_path / "m.jsonl", rows)
    script = AnswerScript(tuple(Rule(pointwise_answer(scores_for(i)), when_request_contains=f"item-{i}")
                                for i in range(3)))
    out = tmp_path / "out.jsonl"
    with Dispatcher(qwen3_critic.with_script(script)) as p:
        report = critique_manifest(manifest, out, p, options=GenerationOptions(max_new_tokens=400, temperature=0),
                                   progress=False, log=lambda m: None)
    assert report.written == 3 and len(report.failed) == 3
    recs = {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert recs["r2"]["scores"]["physical_quality"] == scores_for(2)["physical_quality"]


def test_cli_manifest_needs_out(tmp_path):
    manifest = jsonl(tmp_path / "m.jsonl", write_rows(tmp_path, 1))
    with pytest.raises(SystemExit, match="--out"):
        main(["critique", "--manifest", str(manifest), "--server", "http://127.0.0.1:9/v1"])


def test_a_full_disk_stops_the_run_with_a_clear_message_and_the_rerun_completes(tmp_path):
    """The writing process may not grow the output past a size limit (as a full disk): the run stops naming the
    file and the fix, the file holds only complete lines, and the same command afterwards finishes the rest
    with no duplicate and no gap."""
    import resource

    n = 6
    manifest = jsonl(tmp_path / "m.jsonl", write_rows(tmp_path, n))
    out = tmp_path / "out.jsonl"
    cmd = [sys.executable, "-m", "rationalrewards.toolkit.cli", "critique", "--manifest", str(manifest), "--out",
           str(out), "--server", "", "--model", "critic", "--max-concurrency", "1", "--max-new-tokens", "16",
           "--no-progress", "--retries", "0"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))

    def limited(limit: int):
        def set_limit():
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)          # a write past the limit fails with EFBIG
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        return set_limit

    with FakeOpenAI(answer=answer) as peer:
        cmd[cmd.index("--server") + 1] = peer.url
        probe = tmp_path / "probe.jsonl"
        full = subprocess.run([*cmd[:cmd.index("--out") + 1], str(probe), *cmd[cmd.index("--out") + 2:]], env=env,
                              capture_output=True, text=True, timeout=300)
        assert full.returncode == 0, full.stderr
        sizes = [len(line) + 1 for line in probe.read_bytes().splitlines()]
        limit = sizes[0] + sizes[1] + sizes[2] // 2                   # room for two lines and half of a third
        stopped = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300,
                                 preexec_fn=limited(limit))
        assert stopped.returncode != 0
        assert f"could not write to {out}" in stopped.stderr and "run the same command again" in stopped.stderr
        assert "Traceback" not in stopped.stderr
        kept = read_ids([out])
        assert len(kept) == 2 and out.read_bytes().endswith(b"\n")   # complete lines only
        again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        assert again.returncode == 0, again.stderr
    ids = read_ids([out])
    assert sorted(ids) == sorted(f"r{i}" for i in range(n)) and len(ids) == n and ids[:2] == kept


# -- image cells (both engines read them with these) -----------------------------------------------------

def test_image_cells_bytes_data_uris_paths_and_uris(tmp_path):
    import base64
    import importlib.util

    from rationalrewards.toolkit.tables import cell_parts, decode_image, describe_cell, load_image
    img = Image.new("RGB", (8, 6), (10, 200, 30))
    img.save(tmp_path / "a.png")
    png = (tmp_path / "a.png").read_bytes()
    uri = "data:image/png;base64," + base64.b64encode(png).decode()
    assert cell_parts(uri) == (png, None) and describe_cell(uri) == "<bytes>"
    assert cell_parts({"bytes": base64.b64encode(png).decode(), "path": "a.png"}) == (png, "a.png")
    assert cell_parts([" a.png "]) == (None, "a.png") and describe_cell({"path": "a.png", "bytes": png}) == "a.png"
    cells = [uri, png, "a.png", str(tmp_path / "a.png"), [{"path": "a.png"}]]
    if importlib.util.find_spec("pyarrow") is not None:     # URIs are read through pyarrow's filesystems
        cells.append((tmp_path / "a.png").as_uri())
    for cell in cells:
        assert load_image(cell, tmp_path).tobytes() == img.tobytes(), cell
    with pytest.raises(ImageError, match="base64"):
        cell_parts("data:image/png,plain")
    with pytest.raises(FileNotFoundError, match=f"image file {tmp_path / 'nope.png'} does not exist"):
        load_image("nope.png", tmp_path)
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(OSError, match=f"cannot identify image file '{tmp_path / 'bad.png'}'"):
        load_image("bad.png", tmp_path)
    with pytest.raises(OSError, match="cannot identify image file 'the embedded image'"):
        decode_image(b"not a png")


def test_image_files_on_another_filesystem(tmp_path):
    """A manifest on an object store: its relative paths are read on the store's filesystem (a pyarrow
    SubTreeFileSystem stands in for one), URIs on theirs."""
    pafs = pytest.importorskip("pyarrow.fs")
    from rationalrewards.toolkit.tables import ImageFiles
    (tmp_path / "bucket" / "run" / "img").mkdir(parents=True)
    (tmp_path / "bucket" / "run" / "img" / "a.png").write_bytes(b"A")
    (tmp_path / "elsewhere.png").write_bytes(b"B")
    files = ImageFiles("run", pafs.SubTreeFileSystem(str(tmp_path / "bucket"), pafs.LocalFileSystem()))
    assert files.read("img/a.png") == (b"A", "run/img/a.png")
    assert files.read("/run/img/a.png")[0] == b"A"
    assert files.read((tmp_path / "elsewhere.png").as_uri())[0] == b"B"
    with pytest.raises(FileNotFoundError, match="image file run/img/nope.png does not exist"):
        files.read("img/nope.png")


# -- the Ray engine's command line (what is checked before Ray is imported) -------------------------------

def test_cli_ray_engine_rejects_shard_and_says_how_to_install_ray(tmp_path, monkeypatch):
    manifest = jsonl(tmp_path / "m.jsonl", write_rows(tmp_path, 1))
    base = ["critique", "--manifest", str(manifest), "--out", str(tmp_path / "out"), "--engine", "ray",
            "--server", "http://127.0.0.1:9/v1"]
    with pytest.raises(SystemExit, match="leave --shard out"):
        main(base + ["--shard", "1/2"])
    with pytest.raises(SystemExit, match="critiques a --manifest"):
        main(["critique", "--engine", "ray", "--prompt", "p", str(tmp_path / "img" / "0.png"), "--server", "x"])
    monkeypatch.setitem(sys.modules, "ray", None)              # as if Ray were not installed
    monkeypatch.delitem(sys.modules, "rationalrewards.toolkit.ray_engine", raising=False)
    with pytest.raises(SystemExit, match=r"pip install \"ray\[data\]"):
        main(base)


@pytest.mark.parametrize("text, parsed", [("3", 3), ("1-8", (1, 8)), ("2-", (2, None)), ("0", None), ("4-2", None),
                                          ("x", None)])
def test_cli_ray_actors(text, parsed):
    import argparse

    from rationalrewards.toolkit.cli import _actors
    if parsed is None:
        with pytest.raises(argparse.ArgumentTypeError, match="MIN-MAX"):
            _actors(text)
    else:
        assert _actors(text) == parsed
