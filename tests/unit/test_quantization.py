"""Quantised critics on the CPU: a tiny Qwen3-VL whose linear widths bitsandbytes' CPU kernels accept
(multiples of 64), quantised int8 and 4-bit (NF4) while loading, generates through the real model and the
scripted answer parses; a folder saved already quantised loads as it is; missing packages are clear errors."""
from __future__ import annotations

import importlib.util
import json

import pytest
from PIL import Image

from rationalrewards.runtime import memory_plan, quantization
from rationalrewards.backends.base import GenerationOptions
from rationalrewards.runtime.compat import DependencyError
from rationalrewards.runtime.loader import load_critic
from rationalrewards.critic.script import AnswerScript, Rule
from tests.unit.rr_sample_answers import T2I_FULL, T2I_FULL_SCORES

needs_bnb = pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is None,
                               reason="bitsandbytes not installed (the [quant] extra); scripts/setup_env.sh installs it")
SCRIPTED = GenerationOptions(temperature=0)
FREE = GenerationOptions(max_new_tokens=8, temperature=0)
LAYER = {"int8": "Linear8bitLt", "4bit": "Linear4bit"}


@pytest.fixture(scope="module")
def wide_dir(tmp_path_factory):
    from tests.fixtures.tiny_critic import build_tiny_critic

    root = tmp_path_factory.mktemp("quant_models")
    build_tiny_critic(root / "tiny-wide", wide=True)
    return root


_CACHE: dict = {}


def quantised(wide_dir, q: str):
    if q not in _CACHE:
        _CACHE[q] = load_critic("tiny-wide", [wide_dir], quantization=q)
    return _CACHE[q]


@needs_bnb
@pytest.mark.parametrize("q", ["int8", "4bit"])
def test_quantised_critic_loads_generates_and_parses(wide_dir, q):
    critic = quantised(wide_dir, q)
    model = critic.backend.model
    assert critic.backend.quantization.startswith(q)
    kinds = {type(m).__name__ for m in model.modules()}
    assert LAYER[q] in kinds, kinds
    assert type(model.lm_head).__name__ == "Linear"              # lm_head stays in the compute dtype
    [c] = critic.with_script(AnswerScript((Rule(T2I_FULL),))).critique(
        [Image.new("RGB", (64, 64), (200, 20, 20))], "a red cat holding a sign", SCRIPTED)
    assert c.raw == T2I_FULL
    assert {k: d.value for k, d in c.dimensions.items()} == T2I_FULL_SCORES
    [free] = critic.critique([Image.new("RGB", (64, 64), (20, 20, 200))], "a blue dog", FREE)
    assert free.raw                                              # the quantised model really decodes


@needs_bnb
def test_quantised_weights_are_smaller_as_the_plan_says(wide_dir):
    plain = load_critic("tiny-wide", [wide_dir])
    sizes = {"none": plain.backend.model.get_memory_footprint()}
    for q in ("int8", "4bit"):
        sizes[q] = quantised(wide_dir, q).backend.model.get_memory_footprint()
    assert sizes["4bit"] < sizes["int8"] < sizes["none"]
    shape = memory_plan.shape_from_folder(wide_dir / "tiny-wide")
    for q in ("int8", "4bit"):   # the plan's weight bytes match what bitsandbytes holds to within a few %
        planned = memory_plan.plan(shape, quantization=q, dtype="fp32").weights
        assert abs(planned - sizes[q]) / sizes[q] < 0.05, (q, planned, sizes[q])


@needs_bnb
@pytest.mark.parametrize("q", ["4bit", "int8"])
def test_prequantised_folder_loads_as_it_is(wide_dir, tmp_path, q):
    folder = tmp_path / f"tiny-{q}-saved"
    critic = quantised(wide_dir, q)
    critic.backend.model.save_pretrained(folder)
    critic.backend.processor.save_pretrained(folder)
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["quantization_config"]["quant_method"] == "bitsandbytes"
    expected = "bitsandbytes 4-bit (nf4)" if q == "4bit" else "bitsandbytes 8-bit"
    assert quantization.found_quantization(folder) == expected

    again = load_critic(str(folder), [], quantization="int8" if q == "4bit" else "4bit")   # ignored: loads as stored
    assert again.backend.quantization == f"already quantised: {expected}"
    assert LAYER[q] in {type(m).__name__ for m in again.backend.model.modules()}
    [c] = again.with_script(AnswerScript((Rule(T2I_FULL),))).critique(
        [Image.new("RGB", (64, 64), (200, 20, 20))], "a red cat holding a sign", SCRIPTED)
    assert {k: d.value for k, d in c.dimensions.items()} == T2I_FULL_SCORES
    plan = memory_plan.plan(memory_plan.shape_from_folder(folder))
    assert plan.quantization == "prequantized" and expected in plan.notes[0]


def test_missing_bitsandbytes_is_a_clear_error(wide_dir, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(quantization.importlib.util, "find_spec",
                        lambda name, *a: None if name == "bitsandbytes" else real(name, *a))
    with pytest.raises(DependencyError, match=r'quantize weights 4bit needs the bitsandbytes package.*pip install '
                                              r'"bitsandbytes>=0.50"'):
        load_critic("tiny-wide", [wide_dir], quantization="4bit")


def test_prequantised_folder_without_its_package_is_a_clear_error(tmp_path, monkeypatch):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "qwen3_vl", "quantization_config": {
        "quant_method": "awq", "bits": 4}}))
    monkeypatch.setattr(quantization.importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(DependencyError, match="already quantised \\(awq 4-bit\\).*pip install autoawq"):
        quantization.require_method(tmp_path)


@needs_bnb
def test_benchmark_quant_dry_run(tmp_path):
    """bench/critic_bench.py --quant --dry-run: the quantised-variant steps on the tiny wide critic, on CPU."""
    from bench import critic_bench as bench

    bench.main(["--quant", "--dry-run", "--variants", "4bit", "--tokens", "4", "--json", str(tmp_path / "q.json")])
    result = json.loads((tmp_path / "q.json").read_text())
    row = result["variants"]["4bit"]
    assert "error" not in row, row
    assert row["quantization"].startswith("4bit") and row["tokens"] == 4
    assert row["same_answer_after_swap"] is True and row["simulated"] is True
    assert abs(row["planned_weight_bytes"] - row["weight_bytes"]) / row["weight_bytes"] < 0.05
