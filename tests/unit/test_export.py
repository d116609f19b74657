"""``rationalrewards export``: a sharded tiny Qwen3-VL checkpoint -> one ComfyUI text-encoder file, bf16 and fp8.

What ComfyUI's loader reads is checked here with plain safetensors (keys in the Hugging Face layout its
loader renames, the scaled-fp8 layout and ``_quantization_metadata``); loading the file through ComfyUI's
own functions needs a ComfyUI with native Qwen3-VL (tests/newer_comfyui/test_native_critic.py).
"""
from __future__ import annotations

import json
import re

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from rationalrewards.critic.prompting import get_template
from rationalrewards.toolkit.cli import main as cli
from rationalrewards.toolkit.export import (FP8_LAYER, FP8_MAX, ExportError, export, file_metadata, read_header,
                                            source_tensors)
from tests.fixtures.tiny_critic import build_tiny_critic

# ComfyUI's renames for an HF-layout Qwen3-VL file (comfy/sd.py, 0.33.0); every key must start with one
COMFY_PREFIXES = ("model.language_model.", "model.visual.", "lm_head.")


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    folder = build_tiny_critic(tmp_path_factory.mktemp("export") / "RationalRewards-tiny", shard_size="300KB")
    assert (folder / "model.safetensors.index.json").is_file() and len(list(folder.glob("*.safetensors"))) > 2
    return folder


def source_state(folder) -> dict[str, torch.Tensor]:
    out = {}
    for f in folder.glob("*.safetensors"):
        out.update(load_file(f))
    return out


def test_bf16_export_is_one_file_with_every_tensor_of_the_shards(sharded, tmp_path):
    result = export(sharded, tmp_path / "critic_bf16.safetensors", "bf16")
    src = source_state(sharded)
    out = load_file(result.path)
    assert sorted(out) == sorted(src) and result.tensors == len(src) and result.fp8_layers == 0
    assert all(k.startswith(COMFY_PREFIXES) for k in out)                  # what ComfyUI's loader renames
    assert "model.visual.deepstack_merger_list.0.norm.weight" in out        # what it detects Qwen3-VL by
    for k, t in src.items():
        assert out[k].dtype == torch.bfloat16 and torch.equal(out[k], t.to(torch.bfloat16)), k
    assert "_quantization_metadata" not in read_header(result.path)["__metadata__"]
    assert not list(tmp_path.glob("*.part"))


def test_fp8_export_uses_comfyuis_scaled_fp8_layout(sharded, tmp_path):
    result = export(sharded, tmp_path / "critic_fp8.safetensors", "fp8")
    header = read_header(result.path)
    quant = json.loads(header["__metadata__"]["_quantization_metadata"])
    layers = quant["layers"]
    assert quant["format_version"] == "1.0" and set(map(json.dumps, layers.values())) == {'{"format": "float8_e4m3fn"}'}
    # 2 layers x (q, k, v, o, gate, up, down)
    assert len(layers) == result.fp8_layers == 14 and all(FP8_LAYER.match(n) for n in layers)
    src = source_state(sharded)
    out = load_file(result.path)
    assert sorted(out) == sorted(list(src) + [f"{n}.weight_scale" for n in layers])
    for name in layers:
        w, scale = out[f"{name}.weight"], out[f"{name}.weight_scale"]
        assert w.dtype == torch.float8_e4m3fn and scale.dtype == torch.float32 and scale.shape == ()
        original = src[f"{name}.weight"].float()
        assert float(scale) == pytest.approx(float(original.abs().max()) / FP8_MAX)
        restored = w.float() * scale                                         # how ComfyUI dequantises it
        assert torch.allclose(restored, original, rtol=0.07, atol=float(scale) * 2)   # e4m3: 3 mantissa bits
    kept = [k for k in out if not k.endswith(".weight_scale") and k[:-len(".weight")] not in layers]
    assert kept and all(out[k].dtype == torch.bfloat16 for k in kept)      # norms, embeddings, lm_head, vision
    assert "lm_head.weight" in kept and any(k.startswith("model.visual.") for k in kept)


def test_metadata_names_the_checkpoint_templates_and_image_sizes(sharded, tmp_path):
    bf16 = file_metadata(export(sharded, tmp_path / "a.safetensors", "bf16").path)
    fp8 = file_metadata(export(sharded, tmp_path / "b.safetensors", "fp8").path)
    assert bf16["source"] == "RationalRewards-tiny" and bf16["format"] == "bf16" and fp8["format"].startswith("fp8")
    assert re.fullmatch(r"[0-9a-f]{64}", bf16["weights_sha256"]) and bf16["weights_sha256"] != "0" * 64
    assert bf16["weights_sha256"] == fp8["weights_sha256"]               # the digest names the source, not the format
    templates = json.loads(bf16["templates"])
    assert templates["t2i_pointwise"] == get_template("t2i_pointwise").digest and len(templates) == 6
    assert bf16["image_min_pixels"] == str(32 * 32) and bf16["image_max_pixels"] == str(128 * 128)
    assert bf16["trained_max_pixels"] == "802816"                        # a RationalRewards checkpoint by name


def test_a_user_template_changes_the_recorded_hash(sharded, tmp_path):
    mine = tmp_path / "templates"
    mine.mkdir()
    text = get_template("t2i_pointwise").path
    (mine / "t2i_pointwise.txt").write_text(open(text, encoding="utf-8").read() + "\nBe brief.\n", encoding="utf-8")
    meta = file_metadata(export(sharded, tmp_path / "c.safetensors", "bf16", template_dirs=(str(mine),)).path)
    assert json.loads(meta["templates"])["t2i_pointwise"] == get_template("t2i_pointwise", [mine]).digest
    assert json.loads(meta["templates"])["t2i_pointwise"] != get_template("t2i_pointwise").digest


def test_export_streams_one_source_tensor_at_a_time(sharded, tmp_path, monkeypatch):
    """Never the whole model twice in memory: no tensor read before is alive when the next one is read. The
    shards are bf16 here (as real checkpoints are), so the written tensor *is* the source tensor."""
    import shutil
    import weakref

    from safetensors.torch import save_file

    import rationalrewards.toolkit.export as ex

    bf16 = tmp_path / "RationalRewards-bf16"
    shutil.copytree(sharded, bf16)
    for f in bf16.glob("*.safetensors"):
        save_file({k: v.to(torch.bfloat16) for k, v in load_file(f).items()}, f)

    alive: list = []
    real = ex.quantize_fp8

    class Handle:
        def __init__(self, inner):
            self.inner = inner

        def get_tensor(self, key):
            t = self.inner.get_tensor(key)
            alive[:] = [r for r in alive if r() is not None]
            assert len(alive) == 0, f"{len(alive)} source tensor(s) still alive when {key} is read"
            alive.append(weakref.ref(t))
            return t

    import safetensors
    monkeypatch.setattr(safetensors, "safe_open", lambda *a, **k: Handle(safe_open(*a, **k)))
    monkeypatch.setattr(ex, "quantize_fp8", real)
    result = export(bf16, tmp_path / "s.safetensors", "fp8")
    assert result.tensors > len(source_tensors(bf16)) and len(alive) == 1


def test_refusals_name_the_fix(tmp_path, sharded):
    with pytest.raises(ExportError, match="format must be one of bf16, fp8"):
        export(sharded, tmp_path / "x.safetensors", "int4")
    with pytest.raises(ExportError, match="no config.json"):
        export(tmp_path, tmp_path / "x.safetensors")
    other = tmp_path / "qwen25"
    build_tiny_critic(other, family="qwen25vl")
    with pytest.raises(ExportError, match="Qwen3-VL text encoders only.*Load RationalRewards Critic"):
        export(other, tmp_path / "x.safetensors")
    assert not list(tmp_path.glob("*.safetensors"))


def test_the_cli_writes_the_file_and_refuses_to_overwrite(sharded, tmp_path, capsys):
    out = tmp_path / "text_encoders"
    out.mkdir()
    assert cli(["export", str(sharded), "--format", "fp8", "--out", str(out), "--no-progress"]) == 0
    written = out / "RationalRewards-tiny_fp8_scaled.safetensors"
    assert written.is_file() and "models/text_encoders/" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="exists; pass --force"):
        cli(["export", str(sharded), "--format", "fp8", "--out", str(written), "--no-progress"])
    assert cli(["export", "RationalRewards-tiny", "--models-dir", str(sharded.parent), "--out", str(written),
                "--force", "--no-progress", "--format", "bf16"]) == 0
    assert file_metadata(written)["format"] == "bf16"
    with pytest.raises(SystemExit, match="rationalrewards export: .*no-such"):
        cli(["export", "no-such", "--models-dir", str(tmp_path), "--no-progress"])


@pytest.mark.parametrize("fmt", ["bf16", "fp8"])
def test_the_memory_plan_counts_the_exported_file_to_the_byte(sharded, tmp_path, fmt):
    """The native rows of the memory plan are computed from the shape; the exported file is the check."""
    from rationalrewards.runtime import memory_plan as mp

    path = export(sharded, tmp_path / f"{fmt}.safetensors", fmt).path
    header = read_header(path)
    data = max(meta["data_offsets"][1] for k, meta in header.items() if k != "__metadata__")
    assert mp.native_weight_bytes(mp.shape_from_folder(sharded), fmt) == data


def test_native_rows_of_the_memory_plan():
    from rationalrewards.runtime import memory_plan as mp

    shape = mp.shape_from_config(mp.QWEN3_VL_8B)
    bf16, fp8 = (mp.native_plan(shape, f) for f in mp.NATIVE_FORMATS)
    assert fp8.weights < 0.62 * bf16.weights and fp8.runtime == bf16.runtime
    assert mp.streaming(fp8, 24 * mp.GiB) == (0, 0.0)
    left, seconds = mp.streaming(bf16, 12 * mp.GiB)
    assert left == bf16.weights - (12 * mp.GiB - bf16.runtime) and seconds == pytest.approx(left / mp.STREAM_BYTES_PER_S)
    rows = mp.native_table(shape).splitlines()
    [row12] = [r for r in rows if r.startswith("| 12 GB")]
    assert row12.split("|")[3].strip() == "whole on the GPU" and "streams" in row12.split("|")[2]


def test_the_node_reference_shows_the_computed_native_table():
    """docs/nodes.md (linked from the README's download section) holds the native table as computed."""
    from pathlib import Path

    from rationalrewards.runtime import memory_plan as mp

    nodes = (Path(__file__).resolve().parents[2] / "docs" / "nodes.md").read_text(encoding="utf-8")
    assert mp.native_table(mp.shape_from_config(mp.QWEN3_VL_8B)) in nodes
