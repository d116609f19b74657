"""A full disk while an output is written: the error names the file and the fix, every earlier result is
intact, nothing half-written is left under a final name, and the rerun after space is freed ends with
exactly what an uninterrupted run writes (no duplicate, no gap).

The disk fills the way it does for a process with a file-size limit: ``RLIMIT_FSIZE`` lowered in this
process (Python ignores SIGXFSZ, so a write past the limit fails with EFBIG) and raised again after; the
helpers' ENOSPC path is driven directly. ``critique --manifest`` is covered in test_manifest.py (a
subprocess under the limit).
"""
from __future__ import annotations

import errno
import json
import os
import re
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
from PIL import Image

from rationalrewards.toolkit.cli import main
from rationalrewards.toolkit.manifest import ResumableJsonl
from rationalrewards.toolkit.outputs import OutputError, Staged, is_disk_full, write_atomic
from tests.fixtures.fake_openai import FakeOpenAI

resource = pytest.importorskip("resource")          # POSIX: the file-size limit


@contextmanager
def disk_limit(nbytes: int):
    """No file this process writes may grow past ``nbytes`` while the block runs (as a disk that is full)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden ones too), by relative path."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob("*") if p.name.endswith((".part", ".tmp")) or ".rr-partial-" in p.name]


def failure(capsys, *args) -> str:
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    message = str(exc.value.code)
    assert "Traceback" not in message and "could not write to" in message and "the disk is full" in message
    return message


# -- the helpers ------------------------------------------------------------------------------------------

def test_enospc_efbig_and_quota_count_as_a_full_disk_and_permission_does_not():
    assert all(is_disk_full(OSError(e, os.strerror(e))) for e in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT))
    assert not is_disk_full(OSError(errno.EACCES, "Permission denied")) and not is_disk_full(ValueError())


def test_a_staged_write_cut_short_by_enospc_leaves_the_old_file_and_no_part(tmp_path):
    target = tmp_path / "results.json"
    target.write_text("old")
    with pytest.raises(OutputError) as exc:
        with Staged("the old results are kept") as stage:
            stage.path(target).write_bytes(b"new but ha")
            raise OSError(errno.ENOSPC, "No space left on device")
    text = str(exc.value)
    assert text.startswith(f"could not write to {target} (the disk is full: No space left on device)")
    assert f"the old results are kept: free space on the disk that holds {tmp_path}, then run the same " \
           "command again" in text
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]
    with pytest.raises(OutputError, match="make sure .* is writable"):
        with Staged() as stage:
            stage.path(target)
            raise OSError(errno.EACCES, "Permission denied")
    write_atomic(target, "new")
    assert target.read_text() == "new"


def test_a_jsonl_line_cut_short_by_enospc_is_taken_back(tmp_path):
    out = tmp_path / "out.jsonl"
    sink = ResumableJsonl(out)
    sink.write({"id": "a"})

    class Full:                       # the disk takes 5 more bytes, then is full
        def __init__(self, f):
            self.f = f

        def write(self, data):
            if len(data) > 5:
                self.f.write(data[:5])
                return 5
            raise OSError(errno.ENOSPC, "No space left on device")

        def fileno(self):
            return self.f.fileno()

    real, sink._f = sink._f, Full(sink._f)
    with pytest.raises(OutputError, match=r"disk is full.*the 1 records already there are complete and kept.*"
                                          r"run the same command again \(it skips them\)"):
        sink.write({"id": "b"})
    sink._f = real
    sink.close()
    assert out.read_text() == '{"id": "a"}\n'
    assert ResumableJsonl(out).ids == {"a"}


# -- critique --out (no manifest) -------------------------------------------------------------------------

def test_critique_out_adds_a_commands_lines_all_or_none(tmp_path, capsys):
    from tests.unit.rr_sample_answers import T2I_FULL
    paths = []
    for i in range(3):
        paths.append(str(tmp_path / f"img{i}.png"))
        Image.new("RGB", (32, 32), (40 * i, 90, 200)).save(paths[-1])
    out, probe = tmp_path / "out.jsonl", tmp_path / "probe.jsonl"
    with FakeOpenAI(answer=T2I_FULL) as peer:
        common = ["--prompt", "a blue square", "--server", peer.url, "--model", "critic", "--retries", "0",
                  "--max-concurrency", "1"]
        assert main(["critique", paths[0], *common, "--out", str(out)]) == 0          # an earlier command
        assert main(["critique", *paths, *common, "--out", str(probe)]) == 0          # uninterrupted
        before = out.read_bytes()
        line = len(probe.read_bytes()) // 3
        with disk_limit(len(before) + line + line // 2):                            # room for 1.5 more lines
            message = failure(capsys, "critique", *paths, *common, "--out", str(out))
        assert message.startswith(f"rationalrewards critique: could not write to {out}")
        assert "none of this command's 3 critique(s) were added and the 1 line(s) already there are unchanged" \
               in message and "run the same command again" in message
        assert out.read_bytes() == before and not leftovers(tmp_path)
        assert main(["critique", *paths, *common, "--out", str(out)]) == 0           # space freed: the rerun
    assert out.read_bytes() == before + probe.read_bytes()


# -- eval -------------------------------------------------------------------------------------------------

def test_eval_keeps_whole_cached_answers_and_the_old_results(tmp_path, capsys):
    pytest.importorskip("pyarrow")           # the benchmark files of tests/unit/test_eval.py are parquet
    from tests.unit.test_eval import answer, write
    data = write("mmrb2", tmp_path)
    out, probe = tmp_path / "r.json", tmp_path / "probe" / "r.json"
    cache = tmp_path / "r.answers.jsonl"

    def run(peer, target, *extra):
        args = ["eval", "--format", "mmrb2", "--data", str(data), "--out", str(target), "--no-progress", "--seed",
                "1", "--bootstrap", "50", *extra]
        return args + ([] if "--rescore" in extra else ["--server", peer.url, "--model", "critic",
                                                        "--max-new-tokens", "16", "--retries", "0",
                                                        "--max-concurrency", "1"])

    def same(a: dict, b: dict) -> bool:
        return {k: v for k, v in a.items() if k != "cache"} == {k: v for k, v in b.items() if k != "cache"}

    with FakeOpenAI(answer=answer) as peer:
        assert main(run(peer, probe)) == 0
        sizes = [len(x) + 1 for x in (probe.parent / "r.answers.jsonl").read_bytes().splitlines()]
        assert main(run(peer, out, "--limit", "2")) == 0                             # earlier results
        earlier = out.read_bytes()
        with disk_limit(sum(sizes[:2]) + 2 * max(sizes)):                           # the cache fills mid-run
            message = failure(capsys, *run(peer, out))
        assert f"could not write to {cache}" in message and "(it skips them)" in message
        kept = [json.loads(x)["id"] for x in cache.read_bytes().splitlines()]
        assert cache.read_bytes().endswith(b"\n") and 2 < len(kept) < len(sizes)
        assert out.read_bytes() == earlier and not leftovers(tmp_path)
        asked = len(peer.chat_requests())
        assert main(run(peer, out)) == 0                                            # space freed: the rerun
        again = [re.search(r"item-\d+", json.dumps(r.body)).group() for r in peer.chat_requests()[asked:]]
        assert not {f"item-{k[1:]}" for k in kept} & set(again)                    # no kept pair asked again
    ids = [json.loads(x)["id"] for x in cache.read_bytes().splitlines()]
    assert sorted(ids) == sorted(set(ids)) and len(ids) == len(sizes)
    assert same(json.loads(out.read_bytes()), json.loads(probe.read_bytes()))
    # the results file itself: --rescore under a limit the JSON does not fit
    before = out.read_bytes()
    with disk_limit(len(before) // 2):
        message = failure(capsys, *run(None, out, "--rescore", "--rule", "strict"))
    assert f"could not write to {out}" in message and "every answer is kept in" in message and "--rescore" in message
    assert out.read_bytes() == before and not leftovers(tmp_path)
    assert main(run(None, out, "--rescore", "--rule", "strict")) == 0
    assert json.loads(out.read_bytes())["rule"] == "strict"


# -- parrot -----------------------------------------------------------------------------------------------

def test_parrot_phase_files_heal_and_the_export_is_all_or_nothing(tmp_path, capsys):
    from rationalrewards.toolkit import parrot
    from tests.unit import parrot_data
    manifest = parrot_data.write_manifest(tmp_path / "data")
    out, probe = tmp_path / "run", tmp_path / "probe"
    with FakeOpenAI(answer=parrot_data.answer_for_body) as peer:
        args = lambda folder, *extra: ["parrot", str(manifest), "--out", str(folder), "--server", peer.url,  # noqa: E731
                                       "--model", "critic", "--max-new-tokens", "64", "--chunk", "2", *extra]
        assert main(args(probe)) == 0
        calls = len(peer.chat_requests())
        sizes = [len(x) + 1 for x in (probe / "anchored.jsonl").read_bytes().splitlines()]
        with disk_limit(sum(sizes[:3]) + max(sizes) // 2):                          # the first phase fills up
            message = failure(capsys, *args(out))
        assert f"could not write to {out / 'anchored.jsonl'}" in message and "records already there" in message
        kept = (out / "anchored.jsonl").read_bytes()
        assert kept.endswith(b"\n") and kept.count(b"\n") == 3 and not leftovers(out)
        asked = len(peer.chat_requests())
        assert main(args(out)) == 0                                                 # space freed: the rerun
        assert len(peer.chat_requests()) - asked == calls - 3                       # nothing asked twice
    capsys.readouterr()

    def records(folder: Path) -> dict[str, dict]:
        return {f: {json.loads(x)["key"]: json.loads(x) for x in (folder / f).read_bytes().splitlines()}
                for f in [*parrot.FILES.values(), *(Path(f).stem + ".decisions.jsonl" for f in parrot.FILES.values())]}
    assert records(out) == records(probe)
    assert snapshot(out / "export") == snapshot(probe / "export")

    # a new export that does not fit leaves the previous one whole (not a mix of the two)
    earlier = snapshot(out)
    sizes = {name: len(data) for name, data in earlier.items()}
    room = max(v for k, v in sizes.items() if not k.startswith("export/") and k != "summary.json") + 1
    assert room < min(sizes["export/trl.jsonl"], sizes[f"export/{parrot.DATASET_NAME}.json"]) // 2
    with disk_limit(room):
        message = failure(capsys, "parrot", str(manifest), "--out", str(out), "--phases", "export",
                          "--kinds", "pointwise")
    assert "the export in" in message and "--phases export it asks the teacher nothing" in message
    assert snapshot(out) == earlier
    assert main(["parrot", str(manifest), "--out", str(out), "--phases", "export", "--kinds", "pointwise"]) == 0
    trl = [json.loads(x) for x in (out / "export" / "trl.jsonl").read_bytes().splitlines()]
    assert [r["kind"] for r in trl] == ["pointwise"] * 7 and not leftovers(out)


def test_a_parrot_image_copy_cut_short_is_not_left_under_its_name(tmp_path):
    """The export copies images under content names and skips names that exist: a truncated copy under the
    final name would be taken as the image on every later run."""
    from rationalrewards.toolkit import parrot
    from rationalrewards.toolkit.preferences import read_manifest
    from tests.unit import parrot_data
    pairs = read_manifest(parrot_data.write_manifest(tmp_path / "data"))[:2]
    Image.frombytes("RGB", (64, 64), os.urandom(64 * 64 * 3)).save(pairs[0].image_a)   # one big image
    big = pairs[0].image_a.stat().st_size
    config = parrot.ParrotConfig(kinds=("pairwise",))
    raw = {p.id: "answer" for p in pairs}
    with disk_limit(big // 2), pytest.raises(OutputError, match="could not write to .*images.*the disk is full"):
        parrot.export(tmp_path / "export", pairs, raw, [], config)
    assert not (tmp_path / "export").exists() or not [p for p in (tmp_path / "export").rglob("*") if p.is_file()]
    assert parrot.export(tmp_path / "export", pairs, raw, [], config) == {"pairwise": 2}
    copies = {p.stat().st_size for p in (tmp_path / "export" / "images").iterdir()}
    assert big in copies and not leftovers(tmp_path)


# -- export (a checkpoint -> one ComfyUI file) ------------------------------------------------------------

def test_export_never_leaves_a_part_and_keeps_the_older_file(tmp_path, capsys):
    from tests.fixtures.tiny_critic import build_tiny_critic
    folder = build_tiny_critic(tmp_path / "RationalRewards-tiny", shard_size="300KB")
    out, probe = tmp_path / "out" / "critic.safetensors", tmp_path / "probe.safetensors"
    assert main(["export", str(folder), "--format", "fp8", "--out", str(probe), "--no-progress"]) == 0
    assert main(["export", str(folder), "--format", "bf16", "--out", str(out), "--no-progress"]) == 0
    earlier = out.read_bytes()
    with disk_limit(probe.stat().st_size // 2):
        message = failure(capsys, "export", str(folder), "--format", "fp8", "--out", str(out), "--force",
                          "--no-progress")
    assert message.startswith(f"rationalrewards export: could not write to {out}") and "is as it was" in message
    assert out.read_bytes() == earlier and os.listdir(out.parent) == ["critic.safetensors"]
    with disk_limit(probe.stat().st_size // 2):                                    # no older file
        failure(capsys, "export", str(folder), "--format", "fp8", "--out", str(tmp_path / "new"), "--no-progress")
    assert not (tmp_path / "new").exists() or not os.listdir(tmp_path / "new")
    assert main(["export", str(folder), "--format", "fp8", "--out", str(out), "--force", "--no-progress"]) == 0
    assert out.read_bytes() == probe.read_bytes()


# -- Save Critique (the node, in this process) ------------------------------------------------------------

@pytest.fixture
def save_node(pack, tmp_path):
    from tests.comfy_server import comfy_dir, missing_comfyui
    if not (comfy_dir() / "folder_paths.py").is_file():
        missing_comfyui(f"no ComfyUI tree at {comfy_dir()} (scripts/setup_env.sh builds it)")
    if str(comfy_dir()) not in sys.path:
        sys.path.append(str(comfy_dir()))          # appended: ComfyUI's top-level names never shadow ours
    import comfy.cli_args
    comfy.cli_args.args.cpu = True
    import folder_paths
    before = folder_paths.get_output_directory()
    folder_paths.set_output_directory(str(tmp_path / "output"))
    try:
        yield pack("nodes.save"), pack("nodes.common"), tmp_path / "output"
    finally:
        folder_paths.set_output_directory(before)


def test_save_critique_saves_a_batch_whole_or_not_at_all(save_node):
    import torch

    from rationalrewards.judging.parser import parse_critique
    from rationalrewards.judging.rubric import Task
    from tests.unit.rr_sample_answers import T2I_FULL
    save, common, output = save_node
    critique = parse_critique(T2I_FULL, Task.T2I)

    def batch(*images):
        return common.CritiqueSet([critique] * len(images), [f"a red cat {i}" for i in range(len(images))],
                                  images=torch.stack(images))

    flat, noise = torch.full((48, 48, 3), 0.5), torch.rand(48, 48, 3, generator=torch.Generator().manual_seed(0))
    save.SaveCritique.execute(batch(flat, flat), "rr/critique", embed_workflow=False)       # an earlier save
    earlier = snapshot(output)
    assert sorted(earlier) == [f"rr/critique_0000{i}_.{x}" for i in (1, 2) for x in ("json", "png")]
    room = max(map(len, earlier.values())) + 200                    # the flat image fits, the noisy one does not
    with disk_limit(room), pytest.raises(common.NodeError) as exc:
        save.SaveCritique.execute(batch(flat, noise), "rr/critique", embed_workflow=False)
    message = str(exc.value)
    assert message.startswith(f"Save Critique: could not write to {output / 'rr' / 'critique_00004_.png'} "
                              "(the disk is full")
    assert "nothing of this batch was saved" in message and message.endswith("then press Run again")
    assert snapshot(output) == earlier                               # no part file, no half of the batch
    result = save.SaveCritique.execute(batch(flat, noise), "rr/critique", embed_workflow=False)   # space freed
    after = snapshot(output)
    assert sorted(after) == [f"rr/critique_0000{i}_.{x}" for i in (1, 2, 3, 4) for x in ("json", "png")]
    records = json.loads(result.result[0])
    assert [r["image"] for r in records] == ["critique_00003_.png", "critique_00004_.png"]
    assert json.loads(after["rr/critique_00004_.json"]) == records[1]
    png = Image.open(output / "rr" / "critique_00004_.png")
    assert json.loads(png.text["rationalrewards"]) == {k: v for k, v in records[1].items() if k != "image"}
    assert png.size == (48, 48)
