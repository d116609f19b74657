"""The Ray engine of ``critique --manifest`` on a local Ray (2 CPUs): the single path's records, bad rows in
the errors dataset and retried, resumption after a kill, manifests of bytes, paths and URIs.

One Ray instance serves the module (starting one costs seconds on a shared machine); each test starts one
critic actor. Skipped where Ray is not installed (it is an optional extra; CI installs it)."""
from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from rationalrewards.backends.base import GenerationOptions
from rationalrewards.critic.script import AnswerScript, Rule
from rationalrewards.runtime.factory import CheckpointSpec, ServerSpec, server_critics
from rationalrewards.toolkit.dispatch import Dispatcher
from rationalrewards.toolkit.manifest import critique_manifest
from rationalrewards.toolkit.reward import RationalReward
from rationalrewards.toolkit.tables import TableError
from tests.fixtures.fake_openai import FakeOpenAI, Reply, completion
from tests.unit.conftest import critic_folder
from tests.unit.test_manifest import answer, jsonl, scores_for, write_rows
from tests.unit.toolkit_answers import pointwise_answer, tag_of

ray = pytest.importorskip("ray", reason="the Ray engine is an optional extra (pip install -e '.[ray]'); "
                                        "scripts/setup_env.sh --test installs it for CI")
from rationalrewards.toolkit.ray_engine import RayResources, critique_manifest_ray, output_files  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
OPTS = GenerationOptions(max_new_tokens=16, temperature=0.0)
ONE = RayResources(actors=1)


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


class RefusingPeer(FakeOpenAI):
    """Answers like the manifest tests' peer, but refuses (HTTP 400) the prompts tagged in ``refuse``."""

    def __init__(self, **kw):
        super().__init__(answer=answer, **kw)
        self.refuse: set[int] = set()

    def handle(self, rec):
        if rec.path == "/v1/chat/completions" and rec.body and tag_of(rec.body) in self.refuse:
            return Reply(400, {"error": {"message": "refused by the content filter", "type": "BadRequestError",
                                         "code": 400}})
        return super().handle(rec)


def ray_records(out: Path) -> dict[str, dict]:
    lines = [line for f in output_files(str(out)) for line in Path(f).read_text().splitlines()]
    records = [json.loads(line) for line in lines]
    assert len(records) == len({r["id"] for r in records}), "a row was written twice"
    return {r["id"]: r for r in records}


def file_records(out: Path) -> dict[str, dict]:
    return {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}


def errors_of(lines: list[str]) -> dict[str, str]:
    return {e["id"]: e["error"] for e in map(json.loads, lines)}


def ray_errors(out: Path) -> dict[str, str]:
    folder = Path(str(out) + ".errors")
    return errors_of([line for f in sorted(folder.glob("part-*.jsonl")) for line in f.read_text().splitlines()])


def test_server_critic_parquet_bytes_paths_uris_same_records_bad_rows_retried(tmp_path, local_ray):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq
    rows = write_rows(tmp_path, 6, bad=True)
    rows[1]["image"] = (tmp_path / "img" / "1.png").read_bytes()                      # embedded bytes
    rows[2]["image"] = {"bytes": None, "path": str(tmp_path / "img" / "2.png")}      # an absolute path
    rows[3]["image"] = (tmp_path / "img" / "3.png").as_uri()                         # a file:// URI
    rows[4]["source"] = "img/5.png"                                                  # an edit
    rows.append({"id": "refused", "image": "img/0.png", "prompt": "item-77"})
    for r in rows:
        r.setdefault("source", None)
        if isinstance(r["image"], str):
            r["image"] = {"bytes": None, "path": r["image"]}
        elif isinstance(r["image"], bytes):
            r["image"] = {"bytes": r["image"], "path": None}
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "m.parquet")
    with RefusingPeer() as peer:
        peer.refuse = {77}
        with Dispatcher(server_critics([peer.url], model="critic", retries=0, timeout_s=10)) as pool:
            single = critique_manifest(tmp_path / "m.parquet", tmp_path / "single.jsonl", pool, options=OPTS,
                                       progress=False, log=lambda m: None)
        spec = ServerSpec(peer.url, "critic", retries=0, timeout_s=10)
        report = critique_manifest_ray(tmp_path / "m.parquet", tmp_path / "ray", spec, options=OPTS, resources=ONE,
                                       progress=False, log=lambda m: None)
        assert (report.total, report.written, report.already_done) == (10, 6, 0)
        assert sorted(f["id"] for f in report.failed) == sorted(f["id"] for f in single.failed) \
            == ["broken", "empty", "missing", "refused"]
        got, want = ray_records(tmp_path / "ray"), file_records(tmp_path / "single.jsonl")
        assert sorted(got) == [f"r{i}" for i in range(6)]
        assert got == want                                         # every key and value, both engines
        assert got["r1"]["image"] == "<bytes>" and got["r4"]["source"] == "img/5.png" and got["r4"]["task"] == "edit"
        assert got["r2"]["scores"] == {k: float(v) for k, v in scores_for(2).items()} | {"text_rendering": None}
        errors, single_errors = ray_errors(tmp_path / "ray"), errors_of(
            (tmp_path / "single.jsonl.errors.jsonl").read_text().splitlines())
        assert errors.keys() == single_errors.keys()
        assert errors == single_errors                             # the same error texts, both engines
        # reward scoring over a manifest is this path: a record's overall is the trainers' reward
        reward = RationalReward(servers=[peer.url], model="critic", retries=0, on_unreadable="nan")
        image = Image.open(tmp_path / "img" / "0.png")
        assert got["r0"]["overall"] == pytest.approx(reward([image], "a blue square item-0").overall[0])
        reward.close()

        # rerun: nothing written twice, the failed rows are retried (the refusal is lifted)
        peer.refuse = set()
        asked = len(peer.chat_requests())
        again = critique_manifest_ray(tmp_path / "m.parquet", tmp_path / "ray", spec, options=OPTS, resources=ONE,
                                      progress=False, log=lambda m: None)
        assert len(peer.chat_requests()) == asked + 1             # only the refused row reached the server again
    assert (again.already_done, again.written) == (6, 1)
    assert sorted(f["id"] for f in again.failed) == ["broken", "empty", "missing"]
    assert sorted(ray_records(tmp_path / "ray")) == sorted([f"r{i}" for i in range(6)] + ["refused"])
    assert sorted(ray_errors(tmp_path / "ray")) == ["broken", "empty", "missing"]


def test_in_process_checkpoint_jsonl_with_data_uris_same_records(tmp_path, local_ray, tiny_models_dir, qwen3_critic):
    rows = write_rows(tmp_path, 4)
    png = (tmp_path / "img" / "1.png").read_bytes()
    rows[1]["image"] = "data:image/png;base64," + base64.b64encode(png).decode()     # bytes embedded in JSON
    manifest = jsonl(tmp_path / "m.jsonl", rows)
    script = AnswerScript(tuple(Rule(pointwise_answer(scores_for(i)), when_request_contains=f"item-{i}")
                                for i in range(4)))
    options = GenerationOptions(max_new_tokens=400, temperature=0)
    with Dispatcher(qwen3_critic.with_script(script)) as pool:
        critique_manifest(manifest, tmp_path / "single.jsonl", pool, options=options, progress=False)
    spec = CheckpointSpec(critic_folder("qwen3vl"), (str(tiny_models_dir),), device="cpu", batch_size=2)
    report = critique_manifest_ray(manifest, tmp_path / "ray", spec, options=options, script=script,
                                   resources=RayResources(actors=1, gpus_per_actor=0), progress=False,
                                   log=lambda m: None)
    assert (report.written, report.failed) == (4, [])
    got, want = ray_records(tmp_path / "ray"), file_records(tmp_path / "single.jsonl")
    assert got == want
    assert got["r1"]["image"] == "<bytes>"
    assert got["r3"]["scores"]["physical_quality"] == scores_for(3)["physical_quality"]
    assert not Path(str(tmp_path / "ray") + ".errors").exists()


def test_killed_cli_run_resumes_without_loss_or_duplicate(tmp_path, local_ray):
    n = 16
    manifest = jsonl(tmp_path / "m.jsonl", write_rows(tmp_path, n))
    out = tmp_path / "ray"
    cmd = [sys.executable, "-m", "rationalrewards.toolkit.cli", "critique", "--manifest", str(manifest),
           "--out", str(out), "--engine", "ray", "--ray-address", local_ray, "--ray-actors", "1",
           "--ray-batch-size", "2", "--server", "", "--model", "critic", "--max-concurrency", "2",
           "--max-new-tokens", "16", "--retries", "0", "--no-progress"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), str(ROOT)])))
    with FakeOpenAI(answer=answer) as peer:
        gate = threading.Event()
        # six answers go out at once; every later request waits on the gate, so the kill lands mid-run
        peer.script = [lambda body: Reply(body=completion(answer(body), "critic")) for _ in range(6)]
        peer.hold = gate
        cmd[cmd.index("--server") + 1] = peer.url
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 240          # a guard against a hang, not a speed requirement
            while len(ray_records(out) if out.exists() else {}) < 6:
                assert proc.poll() is None, proc.stderr.read().decode()
                assert time.monotonic() < deadline, "the run never wrote six rows"
                time.sleep(0.05)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        first = {f: Path(f).read_bytes() for f in output_files(str(out))}
        assert 6 <= len(ray_records(out)) < n
        (out / ".part-0123.jsonl.abc.tmp").write_text('{"id": "r15", "sco')     # as if killed mid-write
        peer.hold = None
        gate.set()
        report = critique_manifest_ray(manifest, out, ServerSpec(peer.url, "critic", retries=0), options=OPTS,
                                       resources=ONE, progress=False, log=lambda m: None)
    records = ray_records(out)                                    # asserts no id twice
    assert sorted(records) == sorted(f"r{i}" for i in range(n))
    assert report.already_done + report.written == n and not report.failed
    assert all(Path(f).read_bytes() == data for f, data in first.items())   # finished files were left alone
    assert not list(out.glob(".*.tmp"))


def test_manifest_problems_are_named_before_any_critique(tmp_path, local_ray):
    spec = ServerSpec("http://127.0.0.1:9/v1", "critic", check=False)     # never asked
    with pytest.raises(TableError, match="a.jsonl: no 'image' column") as e:
        critique_manifest_ray(jsonl(tmp_path / "a.jsonl", [{"prompt": "p"}]), tmp_path / "o", spec, progress=False)
    assert "ray::" not in str(e.value)                                      # the error itself, not Ray's wrapper
    with pytest.raises(TableError, match="id 'x' appears more than once"):
        critique_manifest_ray(jsonl(tmp_path / "b.jsonl", [{"id": "x", "image": "a", "prompt": "p"}] * 2),
                              tmp_path / "o", spec, progress=False)
    (tmp_path / "single.jsonl").write_text("")
    with pytest.raises(TableError, match="give a folder for --out"):
        critique_manifest_ray(jsonl(tmp_path / "c.jsonl", [{"image": "a", "prompt": "p"}]), tmp_path / "single.jsonl",
                              spec, progress=False)
    assert not (tmp_path / "o").exists()
