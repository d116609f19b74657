"""Distillation: a few LoRA SFT steps (TRL + PEFT) of the tiny critic on a PARROT export.

The loss must go down, and the adapter must load back through the critic loader (merged into the
weights) and critique like any checkpoint.
"""
from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from rationalrewards.toolkit import parrot
from rationalrewards.backends.base import GenerationOptions
from rationalrewards.backends.openai_server import OpenAIServerBackend
from rationalrewards.critic.critic import Critic
from rationalrewards.toolkit.distill import DistillConfig, distill, load_export
from rationalrewards.runtime.loader import load_critic
from rationalrewards.toolkit.preferences import read_manifest
from tests.fixtures.fake_openai import FakeOpenAI
from tests.unit import parrot_data


@pytest.fixture
def export_dir(tmp_path):
    manifest = parrot_data.write_manifest(tmp_path / "data")
    keep = {"alpha", "juliet"}          # one T2I and one edit pair: 2 pairwise + 4 pointwise records
    manifest.write_text("".join(line + "\n" for line in manifest.read_text().splitlines()
                                if json.loads(line)["id"] in keep))
    with FakeOpenAI(answer=parrot_data.answer_for_body) as peer:
        teacher = parrot.Teacher(Critic(backend=OpenAIServerBackend(peer.url, "critic")), GenerationOptions(64))
        summary = parrot.run(read_manifest(manifest), tmp_path / "run", teacher)
    assert summary.exported == {"pairwise": 2, "pointwise": 4}
    return tmp_path / "run" / "export"


def test_load_export_decodes_images(export_dir):
    ds = load_export(export_dir)
    assert len(ds) == 6
    row = ds[0]
    assert all(isinstance(img, Image.Image) for img in row["images"]) and len(row["images"]) == 2


def test_lora_sft_lowers_the_loss_and_the_adapter_loads_through_the_loader(export_dir, tiny_models_dir, tmp_path):
    result = distill(export_dir, "tiny-qwen3vl", [tiny_models_dir], tmp_path / "student",
                     DistillConfig(steps=4, learning_rate=3e-3, lora_r=4, batch_size=2))
    assert result.steps == 4 and len(result.losses) == 4
    assert result.losses[-1] < result.losses[0]
    assert (result.adapter_dir / "adapter_model.safetensors").is_file()
    assert json.loads((tmp_path / "student" / "train_log.json").read_text())["losses"] == result.losses

    base = load_critic("tiny-qwen3vl", [tiny_models_dir], decoding="plain")
    tuned = load_critic("tiny-qwen3vl", [tiny_models_dir], decoding="plain", adapter=result.adapter_dir)
    name = "model.language_model.layers.0.self_attn.q_proj.weight"
    before, after = base.backend.model.state_dict()[name], tuned.backend.model.state_dict()[name]
    assert before.shape == after.shape and not torch.equal(before, after)
    vision = "model.visual.blocks.0.attn.qkv.weight"
    assert torch.equal(base.backend.model.state_dict()[vision], tuned.backend.model.state_dict()[vision])
    crit = tuned.critique([Image.new("RGB", (32, 32), (200, 10, 10))], "a red cat",
                          GenerationOptions(max_new_tokens=4, temperature=0.0))
    assert len(crit) == 1 and isinstance(crit[0].raw, str)


def test_adapter_folder_must_hold_safetensors(tiny_models_dir, tmp_path):
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "adapter_config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="adapter_model.safetensors"):
        load_critic("tiny-qwen3vl", [tiny_models_dir], adapter=tmp_path / "adapter")


def test_cli_distill_phase_trains_on_the_export_it_finds(export_dir, tiny_models_dir, tmp_path, capsys):
    """`rationalrewards parrot --phases distill` on an earlier run's folder: no teacher, the saved export."""
    from rationalrewards.toolkit.cli import main
    manifest, out = str(tmp_path / "data" / "manifest.jsonl"), str(export_dir.parent)
    with pytest.raises(SystemExit, match="needs --student-model"):
        main(["parrot", manifest, "--out", out, "--phases", "distill"])
    rc = main(["parrot", manifest, "--out", out, "--phases", "distill", "--student-model", "tiny-qwen3vl",
               "--models-dir", str(tiny_models_dir), "--steps", "2", "--lora-r", "4", "--train-batch-size", "2",
               "--learning-rate", "3e-3"])
    assert rc == 0
    assert "distill: 2 step(s), loss" in capsys.readouterr().out
    assert (export_dir.parent / "student" / "adapter" / "adapter_model.safetensors").is_file()
