"""The memory plan: the real Qwen3-VL-8B shape (published config values, no weights) against hand
arithmetic; exact counts of the tiny critics from their headers and the formula; the refusal message."""
from __future__ import annotations

import json

import pytest

from rationalrewards.runtime import memory_plan as mp

GiB = 2 ** 30


def test_qwen3_vl_8b_parameter_count_by_hand():
    w = mp.count_parameters(mp.QWEN3_VL_8B)
    h, inter, L, V = 4096, 12288, 36, 151936
    q, kv, hd = 32 * 128, 8 * 128, 128
    text_linear = L * (h * q + 2 * h * kv + q * h + 3 * h * inter)            # 6,945,767,424
    vh, vi, depth = 1152, 4304, 27
    vision_linear = depth * (vh * 3 * vh + vh * vh + 2 * vh * vi)              # 411,206,400
    merger_linear = 4 * (4608 * 4608 + 4608 * 4096)                            # main + 3 deepstack = 160,296,192
    assert w.linear == text_linear + vision_linear + merger_linear == 7_517_270_016
    text_other = 2 * V * h + h + L * (2 * h + 2 * hd)                          # embed + untied lm_head + norms
    vision_other = (3 * 2 * 16 * 16 * vh + vh) + 2304 * vh + depth * (4 * vh + 3 * vh + vh + vi + vh)
    merger_other = 4 * (4608 + 4096) + 2 * vh + 3 * 2 * 4608
    assert w.other == text_other + vision_other + merger_other
    assert w.total == 8_767_123_696        # the 8.77 B the model card gives (and a meta-device build counts)


def test_qwen3_vl_8b_plan_by_hand():
    shape = mp.shape_from_config(mp.QWEN3_VL_8B)
    p = mp.plan(shape, quantization="none", dtype="bf16", batch=1, image_pixels=1024 * 1024, new_tokens=2048)
    assert p.weights == 8_767_123_696 * 2                                     # 16.3 GiB = 17.5 GB
    assert p.prompt_tokens == 640 + 1024 * 1024 // (32 * 32) == 1664
    assert p.kv_cache == 2 * 36 * 8 * 128 * 2 * (1664 + 2048)                 # 144 KiB per token
    patches = 1024 * 1024 // 256
    assert p.vision == (patches * (5 * 1152 + 2 * 4304) * 2 + patches * 3 * 2 * 256 * 4
                        + 4 * (patches // 4) * 4096 * 2)
    assert p.total == p.weights + p.kv_cache + p.vision + p.prefill + p.reserve
    assert 17 * GiB < p.total < 19 * GiB

    i8 = mp.plan(shape, quantization="int8")
    assert i8.weights == 7_517_270_016 + 4 * 1_707_376 + 1_249_853_680 * 2
    nf4 = mp.plan(shape, quantization="4bit")
    assert nf4.weights == int(7_517_270_016 * (0.5 + 1 / 64 + 4 / (64 * 256)) + 1_249_853_680 * 2)
    assert 5.5 * GiB < nf4.weights < 6.5 * GiB < i8.weights < 10 * GiB
    # a batch of 4 quadruples the KV cache; eager attention adds the score matrices
    assert mp.plan(shape, batch=4).kv_cache == 4 * p.kv_cache
    assert mp.plan(shape, attention="eager").total > p.total


def test_refusal_names_what_would_fit():
    shape = mp.shape_from_config(mp.QWEN3_VL_8B)
    p = mp.plan(shape)
    with pytest.raises(mp.MemoryPlanError) as e:
        mp.check(shape, p, int(14.8 * GiB), "cuda:0")
    msg = str(e.value)
    assert f"needs {p.total / GiB:.1f} GiB" in msg and "14.8 GiB available on cuda:0" in msg
    assert "quantize weights 4bit (~" in msg and "quantize weights int8 (~" in msg
    assert "Connect to Critic Server" in msg
    mp.check(shape, p, p.total)                                  # exactly enough: no error
    with pytest.raises(mp.MemoryPlanError, match="no local configuration fits"):
        mp.check(shape, p, 4 * GiB)
    with pytest.raises(mp.MemoryPlanError, match="images per critic pass 1"):
        mp.check(shape, mp.plan(shape, quantization="4bit", batch=16), 9 * GiB)


def test_table_gives_a_16gb_configuration_beside_sdxl():
    rows = mp.table(mp.shape_from_config(mp.QWEN3_VL_8B)).splitlines()
    [row] = [r for r in rows if r.startswith("| 16 GB | SDXL")]
    assert "4bit" in row.split("|")[4]


@pytest.mark.parametrize("family", ["qwen3vl", "qwen25vl"])
def test_counts_of_the_tiny_critics_match_their_weights(tiny_models_dir, family):
    import torch
    from transformers import AutoModelForImageTextToText

    folder = tiny_models_dir / f"tiny-{family}"
    model = AutoModelForImageTextToText.from_pretrained(folder)
    linear = sum(m.weight.numel() for n, m in model.named_modules()
                 if isinstance(m, torch.nn.Linear) and not n.endswith("lm_head"))
    total = sum(p.numel() for p in model.parameters())
    headers = mp.count_from_safetensors(folder)
    assert headers.linear == linear
    assert headers.total == total or headers.total - total == model.config.get_text_config().vocab_size * 64
    formula = mp.count_parameters(json.loads((folder / "config.json").read_text()))
    assert formula == headers
    assert mp.shape_from_folder(folder).weights == headers


@pytest.mark.parametrize("qc, text, bits", [
    ({"quant_method": "bitsandbytes", "load_in_4bit": True, "bnb_4bit_quant_type": "nf4"},
     "bitsandbytes 4-bit (nf4)", 4),
    ({"quant_method": "bitsandbytes", "load_in_8bit": True}, "bitsandbytes 8-bit", 8),
    ({"quant_method": "awq", "bits": 4, "group_size": 128}, "awq 4-bit", 4),
    ({"quant_method": "gptq", "bits": 4}, "gptq 4-bit", 4),
    ({"quant_method": "fp8", "activation_scheme": "dynamic"}, "fp8", 8),
    ({"quant_method": "compressed-tensors",
      "config_groups": {"group_0": {"weights": {"num_bits": 8, "type": "float"}}}}, "compressed-tensors (float) 8-bit", 8),
])
def test_prequantized_folders_are_described(qc, text, bits):
    cfg = dict(mp.QWEN3_VL_8B, quantization_config=qc)
    shape = mp.shape_from_config(cfg)
    assert shape.prequantized == text and shape.prequantized_bits == bits
    p = mp.plan(shape)
    assert p.quantization == "prequantized" and text in p.notes[0]
    assert p.weights < mp.plan(mp.shape_from_config(mp.QWEN3_VL_8B)).weights
