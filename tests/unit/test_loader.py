"""Finding critic checkpoints offline first; downloading only when asked, safetensors only."""
from __future__ import annotations

import fnmatch
import json
import socket
from pathlib import Path

import numpy as np
import pytest

import huggingface_hub
from rationalrewards.runtime import checkpoints as loader
from rationalrewards.runtime.loader import (DOWNLOAD_PATTERNS, CheckpointNotFound, is_checkpoint_dir, is_hf_id,
                                    list_local, load_critic, local_folder_name, resolve_checkpoint)

HF_ID = "TIGER-Lab/RationalRewards-8B-T2I"


def make_checkpoint(folder: Path, weights: str = "model.safetensors") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text("{}", encoding="utf-8")
    if weights.endswith(".safetensors"):
        from safetensors.numpy import save_file
        save_file({"w": np.zeros((2, 2), dtype=np.float32)}, str(folder / weights))
    elif weights:
        (folder / weights).write_bytes(b"\x80\x04pickle")
    return folder


@pytest.fixture
def no_network(monkeypatch):
    """Any download or socket connection fails the test."""
    def refuse(*a, **k):
        raise AssertionError(f"network/download attempted: {a} {k}")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub, "snapshot_download", refuse)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


# --- names -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, expected", [(HF_ID, True), ("Qwen/Qwen3-VL-8B-Instruct", True), ("folder", False),
                                            ("a/b/c", False), ("../x", False), ("/abs/path", False)])
def test_is_hf_id(name, expected):
    assert is_hf_id(name) is expected


def test_local_folder_name():
    assert local_folder_name(HF_ID) == "RationalRewards-8B-T2I"
    assert local_folder_name("RationalRewards-8B-T2I") == "RationalRewards-8B-T2I"
    assert local_folder_name("Org/Name/") == "Name"


# --- offline resolution ------------------------------------------------------------------------------

def test_existing_folder_by_name_and_by_hf_id(tmp_path, no_network):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    ckpt = make_checkpoint(b / "RationalRewards-8B-T2I")
    assert resolve_checkpoint("RationalRewards-8B-T2I", [a, b]) == ckpt
    assert resolve_checkpoint(HF_ID, [a, b]) == ckpt
    assert resolve_checkpoint(HF_ID, [str(a), str(b)], allow_download=True) == ckpt   # on disk: no download
    assert resolve_checkpoint(f"  {HF_ID}  ", [a, b]) == ckpt


def test_absolute_path(tmp_path, no_network):
    ckpt = make_checkpoint(tmp_path / "anywhere" / "my-critic")
    assert resolve_checkpoint(str(ckpt), []) == ckpt


def test_first_search_dir_wins(tmp_path, no_network):
    first = make_checkpoint(tmp_path / "one" / "c")
    make_checkpoint(tmp_path / "two" / "c")
    assert resolve_checkpoint("c", [tmp_path / "one", tmp_path / "two"]) == first


def test_load_tiny_critic_offline(tiny_models_dir, no_network):
    critic = load_critic("tiny-qwen3vl", [tiny_models_dir])
    assert critic.name == "tiny-qwen3vl"
    assert critic.backend.source == str(tiny_models_dir / "tiny-qwen3vl")


def test_hf_id_missing_downloads_off(tmp_path, no_network):
    with pytest.raises(CheckpointNotFound) as e:
        resolve_checkpoint(HF_ID, [tmp_path / "models", tmp_path / "other"])
    msg = str(e.value)
    assert str(tmp_path / "models" / "RationalRewards-8B-T2I") in msg
    assert HF_ID in msg
    assert "download if missing" in msg
    assert isinstance(e.value, FileNotFoundError)


def test_folder_without_config_is_not_a_checkpoint(tmp_path, no_network):
    (tmp_path / "RationalRewards-8B-T2I").mkdir()
    (tmp_path / "RationalRewards-8B-T2I" / "model.safetensors").write_bytes(b"")
    assert not is_checkpoint_dir(tmp_path / "RationalRewards-8B-T2I")
    with pytest.raises(CheckpointNotFound):
        resolve_checkpoint(HF_ID, [tmp_path])


def test_plain_name_missing(tmp_path, no_network):
    with pytest.raises(CheckpointNotFound) as e:
        resolve_checkpoint("my-critic", [tmp_path])
    assert "my-critic" in str(e.value) and str(tmp_path) in str(e.value)


@pytest.mark.parametrize("name", ["", "   "])
def test_empty_name(tmp_path, name, no_network):
    with pytest.raises(CheckpointNotFound, match="no critic checkpoint given"):
        resolve_checkpoint(name, [tmp_path])


def test_no_search_dirs(no_network):
    with pytest.raises(CheckpointNotFound, match="no model folder"):
        resolve_checkpoint(HF_ID, [], allow_download=True)


# --- downloads ---------------------------------------------------------------------------------------

class FakeSnapshot:
    """Stands in for huggingface_hub.snapshot_download and drives tqdm_class like the real one."""

    def __init__(self, files: dict[str, int]):
        self.files, self.calls = files, []

    def __call__(self, *, repo_id, local_dir, allow_patterns, tqdm_class, **kwargs):
        self.calls.append(dict(repo_id=repo_id, local_dir=local_dir, allow_patterns=allow_patterns, **kwargs))
        local = Path(local_dir)
        assert local.is_dir()
        wanted = [f for f in self.files if any(fnmatch.fnmatch(f, p) for p in allow_patterns)]
        files_bar = tqdm_class(total=len(wanted), desc=f"Fetching {len(wanted)} files")   # unit "it"
        bytes_bar = tqdm_class(total=0, initial=0, unit="B", unit_scale=True, desc="Downloading")
        bytes_bar.total = sum(self.files[f] for f in wanted)
        for f in wanted:
            if f.endswith(".safetensors"):
                make_checkpoint(local, f)
            elif f == "config.json":
                (local / f).write_text(json.dumps({"model_type": "fake"}), encoding="utf-8")
            else:
                (local / f).write_bytes(b"x")
            size = self.files[f]
            for chunk in (size // 2, size - size // 2):
                bytes_bar.update(chunk)
            files_bar.update(1)
        bytes_bar.close()
        files_bar.close()
        return str(local)


REPO_FILES = {"config.json": 100, "model-00001-of-00002.safetensors": 4000, "model-00002-of-00002.safetensors": 2000,
              "model.safetensors.index.json": 50, "tokenizer.json": 300, "pytorch_model.bin": 9999,
              "modeling_evil.py": 10, "training_args.pt": 20, "optimizer.pt": 20}


def test_download_when_allowed(tmp_path, monkeypatch):
    fake = FakeSnapshot(REPO_FILES)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake)
    seen: list[tuple[int, int]] = []
    path = resolve_checkpoint(HF_ID, [tmp_path / "models"], allow_download=True,
                              progress=lambda done, total: seen.append((done, total)))
    target = tmp_path / "models" / "RationalRewards-8B-T2I"
    assert path == target and is_checkpoint_dir(target)
    assert len(fake.calls) == 1
    call = fake.calls[0]
    assert call["repo_id"] == HF_ID
    assert Path(call["local_dir"]) == target
    patterns = call["allow_patterns"]
    for bad in ("pytorch_model.bin", "pytorch_model-00001-of-00002.bin", "modeling_evil.py", "training_args.pt",
                "model.pth", "model.ckpt", "weights.pkl"):
        assert not any(fnmatch.fnmatch(bad, p) for p in patterns), bad
    for good in ("model.safetensors", "model-00001-of-00002.safetensors", "model.safetensors.index.json",
                 "config.json", "tokenizer.json", "tokenizer_config.json", "preprocessor_config.json",
                 "chat_template.jinja", "merges.txt", "vocab.json", "generation_config.json"):
        assert any(fnmatch.fnmatch(good, p) for p in patterns), good
    assert not (target / "pytorch_model.bin").exists() and not (target / "modeling_evil.py").exists()
    # progress: byte counts only (the file-count bar is ignored), increasing, ending at the total
    total = sum(v for k, v in REPO_FILES.items() if any(fnmatch.fnmatch(k, p) for p in DOWNLOAD_PATTERNS))
    assert seen, "progress callback never called"
    assert all(t == total for _, t in seen)
    dones = [d for d, _ in seen]
    assert dones == sorted(dones) and dones[-1] == total
    assert len(seen) >= 2 * 3


def test_download_without_progress_callback(tmp_path, monkeypatch):
    monkeypatch.setattr(huggingface_hub, "snapshot_download", FakeSnapshot({"config.json": 1, "model.safetensors": 8}))
    assert loader.download(HF_ID, tmp_path / "t") == tmp_path / "t"


def test_download_of_a_pickle_only_repo_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(huggingface_hub, "snapshot_download",
                        FakeSnapshot({"config.json": 10, "pytorch_model.bin": 100}))
    with pytest.raises(CheckpointNotFound, match="safetensors"):
        resolve_checkpoint(HF_ID, [tmp_path], allow_download=True)


# --- safetensors only --------------------------------------------------------------------------------

def test_backend_refuses_bin_only_folder(tmp_path, no_network):
    from rationalrewards.backends.transformers_backend import TransformersBackend
    folder = make_checkpoint(tmp_path / "pickled", weights="pytorch_model.bin")
    assert not is_checkpoint_dir(folder)          # not offered in the loader's list either
    with pytest.raises(FileNotFoundError, match="safetensors"):
        TransformersBackend.load(folder)
    with pytest.raises(FileNotFoundError, match="safetensors"):
        load_critic("pickled", [tmp_path])


# --- listing -----------------------------------------------------------------------------------------

def test_list_local(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    make_checkpoint(one / "b-critic")
    make_checkpoint(one / "a-critic")
    make_checkpoint(one / "pickled-only", weights="pytorch_model.bin")   # never offered: .bin is not loaded
    (one / "no-config").mkdir()
    (one / "no-config" / "model.safetensors").write_bytes(b"")
    (one / "config.json").write_text("{}")          # a file, not a checkpoint folder
    (one / "loose.safetensors").write_bytes(b"")
    make_checkpoint(two / "b-critic")                # same name in two roots: listed once
    make_checkpoint(two / "c-critic")
    assert list_local([one, str(two), tmp_path / "missing"]) == ["a-critic", "b-critic", "c-critic"]
    assert list_local([]) == []


def test_load_critic_passes_the_decoding_mode_to_the_backend(tiny_models_dir):
    critic = load_critic("tiny-qwen3vl", [tiny_models_dir], decoding="static")
    assert critic.backend.decoding == "static" and critic.backend.decoding_mode() == "static"
    with pytest.raises(ValueError, match="decoding"):
        load_critic("tiny-qwen3vl", [tiny_models_dir], decoding="turbo")


# --- damaged checkpoints and images: each a clear error naming the file and the fix -----------------------

def _damaged_copy(tiny_models_dir, tmp_path, how: str):
    import shutil
    folder = tmp_path / "RationalRewards-8B-T2I"        # a known critic's folder name: the fix names its hf command
    shutil.copytree(tiny_models_dir / "tiny-qwen3vl", folder)
    weights = folder / "model.safetensors"
    if how == "truncated":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    elif how == "corrupt":
        data = bytearray(weights.read_bytes())
        data[:8] = b"\xff" * 8
        weights.write_bytes(bytes(data))
    elif how == "config":
        (folder / "config.json").write_text('{"model_type": "qwen3_vl", ', encoding="utf-8")
    elif how == "shards":
        weights.rename(folder / "model-00001-of-00002.safetensors")
        (folder / "model.safetensors.index.json").write_text(json.dumps(
            {"metadata": {}, "weight_map": {"a": "model-00001-of-00002.safetensors",
                                            "b": "model-00002-of-00002.safetensors"}}), encoding="utf-8")
    return folder


@pytest.mark.parametrize("how, says", [
    ("truncated", r"model\.safetensors is truncated or corrupt"),
    ("corrupt", r"model\.safetensors is truncated or corrupt"),
    ("config", r"config\.json is not valid JSON"),
    ("shards", r"incomplete: 1 of 2 weight files are missing \(model-00002-of-00002\.safetensors\)"),
])
def test_a_damaged_checkpoint_is_named_with_its_fix_before_loading(tiny_models_dir, tmp_path, how, says):
    from rationalrewards.errors import RationalRewardsError
    from rationalrewards.runtime.checkpoints import CheckpointDamaged
    from rationalrewards.runtime.loader import load_critic

    folder = _damaged_copy(tiny_models_dir, tmp_path, how)
    with pytest.raises(CheckpointDamaged, match=says) as caught:
        load_critic(folder.name, [tmp_path])
    assert isinstance(caught.value, RationalRewardsError)
    assert f'hf download TIGER-Lab/RationalRewards-8B-T2I --local-dir "{folder}"' in str(caught.value)


@pytest.mark.parametrize("content", [b"not an image at all", "truncated"])
def test_an_unreadable_image_file_is_named(tmp_path, content):
    from PIL import Image

    from rationalrewards.toolkit.tables import load_image
    path = tmp_path / "x.png"
    if content == "truncated":
        Image.new("RGB", (64, 64), (1, 2, 3)).save(path)
        path.write_bytes(path.read_bytes()[:60])
    else:
        path.write_bytes(content)
    with pytest.raises(OSError, match=r"x\.png"):   # truncated or not an image at all: the file is named
        load_image("x.png", tmp_path)
    good = tmp_path / "good.png"
    Image.new("RGB", (8, 8)).save(good)
    assert load_image(str(good)).size == (8, 8)


# --- wrong folders (issue 22): say what was found and what to move where ------------------------------

def _wrong(tmp_path, name=HF_ID) -> str:
    with pytest.raises(CheckpointNotFound) as e:
        resolve_checkpoint(name, [tmp_path])
    return str(e.value)


def test_a_folder_with_a_ckpt_but_no_config_says_what_it_holds(tmp_path, no_network):
    folder = tmp_path / "RationalRewards-8B-T2I"
    folder.mkdir()
    (folder / "rationalrewards.ckpt").write_bytes(b"x")
    msg = _wrong(tmp_path)
    assert "rationalrewards.ckpt" in msg and "no config.json" in msg and "not a critic checkpoint" in msg
    assert f'hf download {HF_ID} --local-dir "{folder}"' in msg and "not found in" not in msg


def test_weights_saved_loose_in_the_models_folder_say_where_to_move_them(tmp_path, no_network):
    make_checkpoint(tmp_path)          # config.json + model.safetensors straight in models/rationalrewards/
    msg = _wrong(tmp_path)
    assert "model.safetensors" in msg and "config.json" in msg and f"lie loose in {tmp_path}" in msg
    assert f"move them (with the tokenizer and processor files) into {tmp_path / 'RationalRewards-8B-T2I'}" in msg


def test_a_checkpoint_one_level_too_deep_or_in_a_hub_cache_layout_says_move_it_up(tmp_path, no_network):
    folder = tmp_path / "RationalRewards-8B-T2I"
    inner = make_checkpoint(folder / "snapshots" / "0123abc")
    msg = _wrong(tmp_path)
    assert f"one level too deep, in {inner}" in msg and f"up into {folder}" in msg


@pytest.mark.parametrize("files, expect", [
    ({}, "is empty"),
    ({"model.safetensors": b""}, "holds model.safetensors but no config.json"),
    ({"config.json": b"{}", "pytorch_model.bin": b"x"}, "no .safetensors weights: the pack loads safetensors only"),
    ({"config.json": b"{}"}, "has config.json but no .safetensors weights"),
    ({"notes.txt": b"x"}, "holds notes.txt but no config.json or .safetensors"),
])
def test_half_filled_folders_say_what_is_missing(tmp_path, no_network, files, expect):
    folder = tmp_path / "RationalRewards-8B-T2I"
    folder.mkdir()
    for name, data in files.items():
        (folder / name).write_bytes(data)
    msg = _wrong(tmp_path)
    assert str(folder) in msg and expect in msg and "hf download" in msg


def test_a_plain_folder_name_without_a_hub_id_says_to_put_the_whole_folder_there(tmp_path, no_network):
    (tmp_path / "my-critic").mkdir()
    (tmp_path / "my-critic" / "weights.gguf").write_bytes(b"x")
    msg = _wrong(tmp_path, "my-critic")
    assert "weights.gguf" in msg and "put the model's whole folder there" in msg
