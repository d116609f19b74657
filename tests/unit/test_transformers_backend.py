"""The in-process transformers backend, on tiny random-weight Qwen3-VL / Qwen2.5-VL checkpoints."""
from __future__ import annotations

import pytest
import torch
from PIL import Image

from rationalrewards.backends.base import GenerationInterrupted, GenerationOptions
from rationalrewards.backends.transformers_backend import (SeededSampler, TransformersBackend, pick_device,
                                                           pick_dtype)
from rationalrewards.critic.critic import Critic, Item
from rationalrewards.critic.prompting import ChatRequest
from rationalrewards.judging.rubric import Task
from tests.unit.rr_sample_answers import T2I_FULL

GREEDY = GenerationOptions(max_new_tokens=24, temperature=0)


def images():
    noise = Image.effect_noise((80, 80), 60).convert("RGB")
    return [Image.new("RGB", (64, 64), (200, 10, 10)), Image.new("RGB", (96, 48), (10, 200, 10)), noise]


def requests(critic: Critic) -> list[ChatRequest]:
    """Three T2I requests of different prompt lengths (so batching needs left padding)."""
    prompts = ["a red cat", "a green dog with a long tail, a top hat and a blue sign", "noise"]
    return [critic.build(Item(Task.T2I, "pointwise", p, (im,))) for p, im in zip(prompts, images())]


def clone_backend(critic: Critic, batch_size: int) -> TransformersBackend:
    b = critic.backend
    return TransformersBackend(b.model, b.processor, batch_size=batch_size, source=b.source)


# --- loading -----------------------------------------------------------------------------------------

def test_loaded_through_loader(tiny_critic, tiny_models_dir):
    b = tiny_critic.backend
    assert isinstance(b, TransformersBackend)
    assert b.source.startswith(str(tiny_models_dir))
    assert b.device.type == "cpu"
    assert next(b.model.parameters()).dtype == torch.float32      # "auto" on CPU
    assert b.tokenizer.padding_side == "left"
    assert b.eos_id == b.tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert b.pad_id == b.tokenizer.convert_tokens_to_ids("<|endoftext|>")
    assert not b.model.training


def test_load_option_errors(tiny_models_dir):
    path = tiny_models_dir / "tiny-qwen3vl"
    with pytest.raises(ValueError, match="attention"):
        TransformersBackend.load(path, attention="magic")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):
            TransformersBackend.load(path, device="cuda")
    with pytest.raises(ValueError, match="dtype"):
        pick_dtype("int3", torch.device("cpu"))
    assert pick_dtype("auto", torch.device("cpu")) is torch.float32
    assert pick_dtype("bf16", torch.device("cpu")) is torch.bfloat16
    assert pick_device("cpu").type == "cpu"


@pytest.mark.parametrize("kw", [dict(max_new_tokens=0), dict(temperature=-0.1), dict(top_p=0), dict(top_p=1.5)])
def test_generation_options_validation(kw):
    with pytest.raises(ValueError):
        GenerationOptions(**kw)


def test_encode_batches_with_left_padding(qwen3_critic):
    reqs = requests(qwen3_critic)
    enc = qwen3_critic.backend.encode(reqs)
    lengths = enc["attention_mask"].sum(1).tolist()
    assert len(set(lengths)) > 1, "requests should differ in length"
    assert enc["input_ids"].shape[0] == 3
    # left padding: every row ends with real tokens
    assert enc["attention_mask"][:, -1].tolist() == [1, 1, 1]
    assert "pixel_values" in enc and "image_grid_thw" in enc
    assert enc["image_grid_thw"].shape[0] == 3


def test_system_message_is_used(qwen3_critic):
    b = qwen3_critic.backend
    req = ChatRequest(parts=(("text", "hello"),), system="SYSTEM-TEXT")
    text = b.processor.apply_chat_template(b._messages(req), add_generation_prompt=True, tokenize=False)
    assert "SYSTEM-TEXT" in text and text.index("SYSTEM-TEXT") < text.index("hello")


# --- forced (scripted) answers -----------------------------------------------------------------------

def test_forced_answer_is_exact(tiny_critic):
    reqs = requests(tiny_critic)[:1]
    out = tiny_critic.backend.generate(reqs, GenerationOptions(), forced=[T2I_FULL])   # default: t=0.1
    assert out == [T2I_FULL]


def test_forced_answer_truncated_by_budget(qwen3_critic):
    b = qwen3_critic.backend
    n = len(b.tokenizer(T2I_FULL, add_special_tokens=False)["input_ids"])
    out = b.generate(requests(qwen3_critic)[:1], GenerationOptions(max_new_tokens=n // 2, temperature=0),
                     forced=[T2I_FULL])
    assert T2I_FULL.startswith(out[0]) and len(out[0]) < len(T2I_FULL)


def test_mixed_batch_forced_and_free(tiny_critic):
    b = tiny_critic.backend
    reqs = requests(tiny_critic)
    free = b.generate(reqs, GREEDY)
    mixed = b.generate(reqs, GREEDY, forced=["# Summary: forced", None, "x"])
    assert mixed[0] == "# Summary: forced"
    assert mixed[2] == "x"
    assert mixed[1] == free[1]      # the free row decodes as if alone


def test_forced_length_mismatch(qwen3_critic):
    with pytest.raises(ValueError, match="one entry per request"):
        qwen3_critic.backend.generate(requests(qwen3_critic), GREEDY, forced=[None])


# --- determinism -------------------------------------------------------------------------------------

def test_greedy_is_deterministic(tiny_critic):
    b, reqs = tiny_critic.backend, requests(tiny_critic)
    first = b.generate(reqs, GREEDY)
    assert b.generate(reqs, GREEDY) == first
    assert all(isinstance(t, str) and t for t in first)


def test_greedy_batched_matches_one_by_one(tiny_critic):
    b, reqs = tiny_critic.backend, requests(tiny_critic)
    batched = b.generate(reqs, GREEDY)
    single = [b.generate([r], GREEDY)[0] for r in reqs]
    assert batched == single
    chunked = clone_backend(tiny_critic, batch_size=2).generate(reqs, GREEDY)
    assert chunked == batched


def test_seeded_sampling_reproducible_and_global_rng_untouched(tiny_critic):
    b, reqs = tiny_critic.backend, requests(tiny_critic)
    opts = GenerationOptions(max_new_tokens=16, temperature=1.0, seed=1234)
    torch.manual_seed(1)
    state = torch.random.get_rng_state()
    first = b.generate(reqs, opts)
    assert torch.equal(state, torch.random.get_rng_state()), "sampling touched the global RNG"
    torch.manual_seed(999)             # the global RNG has no say in the result
    assert b.generate(reqs, opts) == first
    other = b.generate(reqs, GenerationOptions(max_new_tokens=16, temperature=1.0, seed=4321))
    assert other != first
    # a row samples the same alone or in a batch (one generator per row, same seed)
    assert [b.generate([r], opts)[0] for r in reqs] == first
    nucleus = GenerationOptions(max_new_tokens=16, temperature=1.0, top_p=0.5, seed=1234)
    assert b.generate(reqs, nucleus) == b.generate(reqs, nucleus)


def test_seeded_sampler_top_p_keeps_the_top_token():
    s = SeededSampler(temperature=1.0, top_p=1e-6, seed=0, rows=2, device=torch.device("cpu"))
    scores = torch.tensor([[0.0, 5.0, 1.0], [3.0, 0.0, 1.0]])
    out = s(torch.zeros((2, 1), dtype=torch.long), scores)
    assert out.argmax(-1).tolist() == [1, 0]
    assert torch.isinf(out).sum().item() == 4


def test_checkpoint_generation_config_does_not_leak(tiny_critic, monkeypatch):
    """Real checkpoints ship sampling defaults (Qwen2.5-VL: repetition_penalty 1.05, top_k 1, ...);
    greedy and seeded decoding must not change with them, nor use the global RNG."""
    b, reqs = tiny_critic.backend, requests(tiny_critic)
    sampled = GenerationOptions(max_new_tokens=24, temperature=0.7, seed=5)
    base_greedy, base_sampled = b.generate(reqs, GREEDY), b.generate(reqs, sampled)
    gc = b.model.generation_config
    for k, v in dict(do_sample=True, repetition_penalty=1.05, temperature=0.1, top_p=0.001, top_k=1,
                     no_repeat_ngram_size=2).items():
        monkeypatch.setattr(gc, k, v, raising=False)
    state = torch.random.get_rng_state()
    assert b.generate(reqs, GREEDY) == base_greedy
    assert b.generate(reqs, sampled) == base_sampled
    assert b.generate(reqs[:1], GenerationOptions(temperature=0), forced=[T2I_FULL]) == [T2I_FULL]
    assert torch.equal(state, torch.random.get_rng_state())


# --- progress and interruption -----------------------------------------------------------------------

def test_progress_counts_up_to_the_budget(qwen3_critic):
    b = qwen3_critic.backend
    calls: list[tuple[int, int]] = []
    budget = 10
    b.generate(requests(qwen3_critic)[:2], GenerationOptions(max_new_tokens=budget, temperature=0),
               forced=[T2I_FULL, T2I_FULL], progress=lambda d, t: calls.append((d, t)))
    assert [d for d, _ in calls] == list(range(1, budget + 1))
    assert all(t == budget for _, t in calls)


def test_progress_stops_early_at_eos(qwen3_critic):
    calls: list[int] = []
    out = qwen3_critic.backend.generate(requests(qwen3_critic)[:1], GenerationOptions(max_new_tokens=50),
                                        forced=["3"], progress=lambda d, t: calls.append(d))
    assert out == ["3"]
    assert calls == list(range(1, len(calls) + 1)) and len(calls) < 50


@pytest.mark.parametrize("k", [1, 3])
def test_should_stop_interrupts_and_backend_stays_usable(tiny_critic, k):
    b, reqs = tiny_critic.backend, requests(tiny_critic)[:2]
    before = b.generate(reqs, GREEDY)
    asked = {"n": 0}
    steps: list[int] = []

    def should_stop():
        asked["n"] += 1
        return asked["n"] >= k
    with pytest.raises(GenerationInterrupted):   # forced long answers: a random model's early EOS cannot end it first
        b.generate(reqs, GREEDY, forced=[T2I_FULL] * len(reqs), should_stop=should_stop,
                   progress=lambda d, t: steps.append(d))
    assert asked["n"] == k
    assert steps == list(range(1, k + 1))
    assert b.generate(reqs, GREEDY) == before
    assert b.generate(reqs, GREEDY, should_stop=lambda: False) == before


def test_interrupt_stops_later_chunks(qwen3_critic):
    b = clone_backend(qwen3_critic, batch_size=1)
    seen: list[int] = []
    with pytest.raises(GenerationInterrupted):
        b.generate(requests(qwen3_critic), GREEDY, should_stop=lambda: True,
                   progress=lambda d, t: seen.append(d))
    assert seen == [1]     # the first chunk stopped at once, later chunks never ran


def test_generation_interrupted_is_runtime_error():
    assert issubclass(GenerationInterrupted, RuntimeError)


def test_every_eos_id_of_the_checkpoint_stops_generation(qwen3_critic, monkeypatch):
    """Real Qwen3-VL checkpoints list two EOS ids (<|im_end|>, <|endoftext|>); either one ends the answer."""
    backend = qwen3_critic.backend
    assert backend.eos_ids[0] == backend.eos_id
    monkeypatch.setattr(backend, "eos_ids", backend.eos_ids + [backend.pad_id])
    config = backend.generation_config(GenerationOptions(max_new_tokens=4))
    assert list(config.eos_token_id) == backend.eos_ids


def test_tiny_temperature_samples_like_greedy_without_nan(qwen3_critic):
    img = Image.new("RGB", (64, 64), (10, 200, 30))
    greedy = qwen3_critic.run([Item(Task.T2I, "pointwise", "a cat", (img,))],
                              GenerationOptions(max_new_tokens=12, temperature=0))
    tiny = qwen3_critic.run([Item(Task.T2I, "pointwise", "a cat", (img,))],
                            GenerationOptions(max_new_tokens=12, temperature=1e-40))
    assert tiny == greedy
