"""Decoding modes of the transformers backend: static KV cache and compiled decoding give the same
greedy answers as plain ``generate`` (checked here on CPU; CUDA is where they pay off)."""
from __future__ import annotations

import pytest
from PIL import Image
from transformers import CompileConfig

from rationalrewards.backends.base import GenerationInterrupted, GenerationOptions
from rationalrewards.backends.transformers_backend import DECODING, TransformersBackend
from rationalrewards.critic.critic import Critic, Item
from rationalrewards.judging.rubric import Task
from tests.unit.rr_sample_answers import T2I_FULL

GREEDY = GenerationOptions(max_new_tokens=20, temperature=0)


def requests(critic: Critic):
    imgs = [Image.new("RGB", (64, 64), (200, 10, 10)), Image.new("RGB", (96, 48), (10, 200, 10)),
            Image.effect_noise((80, 80), 60).convert("RGB")]
    prompts = ["a red cat", "a green dog with a long tail, a top hat and a blue sign", "noise"]
    return [critic.build(Item(Task.T2I, "pointwise", p, (im,))) for p, im in zip(prompts, imgs)]


def backend(critic: Critic, decoding: str, batch_size: int = 4) -> TransformersBackend:
    b = critic.backend
    return TransformersBackend(b.model, b.processor, batch_size=batch_size, source=b.source, decoding=decoding)


def eager_compile() -> CompileConfig:
    """torch.compile through dynamo with the eager backend: traces the decoding step like the CUDA
    path does, without needing a C++/Triton toolchain on the CPU."""
    cfg = CompileConfig(fullgraph=False, backend="eager", mode=None)
    cfg._compile_all_devices = True
    return cfg


@pytest.fixture(scope="module")
def fresh_qwen3(tiny_models_dir):
    """A private copy of the tiny Qwen3-VL (compiling attaches state to the model object)."""
    from rationalrewards.runtime.loader import load_critic
    return load_critic("tiny-qwen3vl", [tiny_models_dir])


def test_auto_is_plain_on_cpu_and_configs_differ_only_in_cache_and_compile(qwen3_critic):
    b = backend(qwen3_critic, "auto")
    assert b.decoding_mode() == "plain"
    plain, static, compiled = (b.generation_config(GREEDY, m) for m in ("plain", "static", "compiled"))
    assert plain.cache_implementation is None and plain.disable_compile
    assert static.cache_implementation == "static" and static.disable_compile   # no auto-compile on CUDA
    assert compiled.cache_implementation == "static" and not compiled.disable_compile
    assert compiled.compile_config.fullgraph is False
    for cfg in (static, compiled):
        assert (cfg.max_new_tokens, cfg.do_sample, cfg.repetition_penalty, cfg.eos_token_id) == \
               (plain.max_new_tokens, plain.do_sample, plain.repetition_penalty, plain.eos_token_id)
    with pytest.raises(ValueError, match="decoding"):
        backend(qwen3_critic, "turbo")
    assert set(DECODING) == {"auto", "plain", "static", "compiled"}


def test_static_cache_matches_plain_batched_and_one_by_one(tiny_critic):
    reqs = requests(tiny_critic)
    plain = backend(tiny_critic, "plain").generate(reqs, GREEDY)
    static = backend(tiny_critic, "static")
    assert static.generate(reqs, GREEDY) == plain
    assert [static.generate([r], GREEDY)[0] for r in reqs] == plain
    assert backend(tiny_critic, "static", batch_size=2).generate(reqs, GREEDY) == plain


def test_static_cache_keeps_forced_answers_sampling_and_interrupts(qwen3_critic):
    reqs = requests(qwen3_critic)
    plain, static = backend(qwen3_critic, "plain"), backend(qwen3_critic, "static")
    assert static.generate(reqs[:1], GenerationOptions(temperature=0), forced=[T2I_FULL]) == [T2I_FULL]
    sampled = GenerationOptions(max_new_tokens=16, temperature=1.0, seed=7)
    assert static.generate(reqs, sampled) == plain.generate(reqs, sampled)
    steps: list[int] = []
    with pytest.raises(GenerationInterrupted):
        static.generate(reqs[:2], GREEDY, should_stop=lambda: len(steps) >= 3, progress=lambda d, t: steps.append(d))
    assert steps == [1, 2, 3]
    assert static.generate(reqs[:2], GREEDY) == plain.generate(reqs[:2], GREEDY)


def test_compiled_decoding_matches_plain(fresh_qwen3):
    reqs = requests(fresh_qwen3)
    plain = backend(fresh_qwen3, "plain").generate(reqs, GREEDY)
    compiled = backend(fresh_qwen3, "compiled")
    compiled.compile_config = eager_compile()
    assert compiled.generate(reqs, GREEDY) == plain
    assert hasattr(fresh_qwen3.backend.model, "_compiled_call"), "generate did not take the compiled path"
    assert compiled.generate(reqs[1:2], GREEDY) == plain[1:2]      # a new batch size recompiles, same answer
    assert compiled.decoding == "compiled"


def test_compile_failure_falls_back_to_plain_for_the_session(fresh_qwen3, caplog):
    reqs = requests(fresh_qwen3)[:2]
    plain = backend(fresh_qwen3, "plain").generate(reqs, GREEDY)
    broken = backend(fresh_qwen3, "compiled")
    cfg = CompileConfig(backend="no-such-compiler-backend")
    cfg._compile_all_devices = True
    broken.compile_config = cfg
    with caplog.at_level("WARNING", logger="RationalRewards"):
        assert broken.generate(reqs, GREEDY) == plain
    assert broken.decoding == "plain"
    assert "compiled decoding failed" in caplog.text


@pytest.mark.skipif(int(__import__("transformers").__version__.split(".")[0]) < 5,
                    reason="compiled decoding errors inside transformers 4.57's static cache ('StaticLayer' has no "
                           "max_batch_size); the backend falls back to plain decoding there, with a log line")
def test_interrupt_is_not_mistaken_for_a_compile_failure(fresh_qwen3):
    b = backend(fresh_qwen3, "compiled")
    b.compile_config = eager_compile()
    with pytest.raises(GenerationInterrupted):
        b.generate(requests(fresh_qwen3)[:1], GREEDY, should_stop=lambda: True)
    assert b.decoding == "compiled"


def test_device_property_follows_the_weights(qwen3_critic):
    b = qwen3_critic.backend
    assert b.device == next(b.model.parameters()).device
    assert not hasattr(b, "residency")   # the core backend knows nothing of ComfyUI's memory manager


def test_benchmark_dry_run_exercises_the_gpu_path_logic(tmp_path, capsys):
    """bench/critic_bench.py --dry-run: the GPU benchmark's steps on a tiny config, on CPU (in-process)."""
    import json

    from bench import critic_bench as bench
    bench.main(["--dry-run", "--batch", "2", "--rounds", "2", "--repeats", "1", "--tokens", "8",
                "--json", str(tmp_path / "r.json")])
    result = json.loads((tmp_path / "r.json").read_text())
    assert json.loads(capsys.readouterr().out) == result
    assert result["mode"] == "dry-run" and result["pack_decoding"] == "compiled"
    one = result["one_critique_batch1"]
    assert one["same_greedy_tokens"] is True and one["tokens_plain"] == one["tokens_pack"] == 8
    assert result["batch"]["size"] == 2 and result["batch"]["tokens"] == 8
    assert result["swap_in"]["same_answer_after_swaps"] is True and result["swap_in"]["simulated"] is True
    assert result["budget_loop"]["rounds_ok"] == result["budget_loop"]["rounds"] == 2
    overhead = result["cpu_overhead_ms"]
    assert overhead["total"] > 0 and overhead["pack"]["model_inputs"] > 0 and overhead["pack"]["best"] > 0
    assert overhead["baseline_processor_path"]["processor"] > 0 and overhead["ratio_baseline_to_pack"] > 0
    assert overhead["torch_inputs"] is True and overhead["same_inputs_as_processor"] is True
