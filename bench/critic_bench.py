#!/usr/bin/env python3
"""Critic speed and memory benchmark (issue #5): plain transformers ``generate`` against the pack's path,
measured in the same run.

  python bench/critic_bench.py            GPU: a Qwen3-VL-8B-shaped critic (random weights, bf16, built on
                                          the GPU), a 1024x1024 image, 384 new tokens
  python bench/critic_bench.py --cpu      the tiny critic on CPU: CPU overhead per critique (templating,
                                          image prep, decoding the answer, parsing) and small-model timings;
                                          inputs built in torch against the processor path (the baseline),
                                          interleaved in the same run
  python bench/critic_bench.py --dry-run  the GPU mode's steps on a tiny config on CPU (checks the logic;
                                          its timings mean nothing)
  python bench/critic_bench.py --quant [--dry-run]
                                          Load Critic's quantisation variants (none/int8/4bit): weight
                                          memory vs the memory plan, peak memory per critique, swap-in,
                                          ms per token

Prints one JSON object; ``--json PATH`` also writes it. Needs torch, transformers and the core installed
(``pip install -e .``, which ``scripts/setup_env.sh`` does): the offload mechanics are the core's
``rationalrewards.runtime.residency``, the same code the nodes use, so it runs on a machine without ComfyUI.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))          # tests.fixtures.tiny_critic: the offline tokenizer corpus

import torch  # noqa: E402

# Qwen/Qwen3-VL-8B-Instruct config.json (text and vision towers)
SHAPES = {
    "8b": dict(text=dict(hidden_size=4096, intermediate_size=12288, num_hidden_layers=36, num_attention_heads=32,
                         num_key_value_heads=8, head_dim=128, max_position_embeddings=262144),
               rope=({"rope_type": "default", "mrope_section": [24, 20, 20], "mrope_interleaved": True}, 5000000.0),
               vision=dict(depth=27, hidden_size=1152, intermediate_size=4304, num_heads=16, patch_size=16,
                           spatial_merge_size=2, temporal_patch_size=2, out_hidden_size=4096,
                           num_position_embeddings=2304, deepstack_visual_indexes=[8, 16, 24],
                           hidden_act="gelu_pytorch_tanh"),
               vocab=151936),
    "tiny": dict(text=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                           num_key_value_heads=2, head_dim=16, max_position_embeddings=16384),
                 rope=({"rope_type": "default", "mrope_section": [4, 2, 2], "mrope_interleaved": True}, 10000.0),
                 vision=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, patch_size=16,
                             spatial_merge_size=2, temporal_patch_size=2, out_hidden_size=64,
                             num_position_embeddings=64, deepstack_visual_indexes=[0, 1]),
                 vocab=None),
}


def build_processor(max_pixels: int):
    """Offline byte-level BPE with Qwen's special tokens + Qwen's image processor (patch 16, merge 2)."""
    from transformers import Qwen2VLImageProcessor, Qwen3VLProcessor

    from tests.fixtures.tiny_critic import CHAT_TEMPLATE, _video_proc, build_tokenizer
    hf_tok = build_tokenizer()
    ip = Qwen2VLImageProcessor(patch_size=16, merge_size=2, temporal_patch_size=2, min_pixels=32 * 32,
                               max_pixels=max_pixels, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    return Qwen3VLProcessor(image_processor=ip, tokenizer=hf_tok, video_processor=_video_proc(),
                            chat_template=CHAT_TEMPLATE)


def build_model(shape: str, processor, device: str, dtype: torch.dtype):
    """Random weights from the config, allocated directly on ``device`` (8B bf16 on an H100: ~1 s)."""
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    from tests.fixtures.tiny_critic import rope
    tok = processor.tokenizer
    ids = {t: tok.convert_tokens_to_ids(t) for t in ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>",
                                                      "<|vision_end|>", "<|im_end|>", "<|endoftext|>")}
    s = SHAPES[shape]
    cfg = Qwen3VLConfig(text_config=dict(vocab_size=s["vocab"] or len(tok), **s["text"], **rope(*s["rope"])),
                        vision_config=s["vision"],
                        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
                        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
                        eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"],
                        tie_word_embeddings=False)
    torch.manual_seed(0)           # a benchmark, not a node: the global RNG is ours here
    with torch.device(device):
        model = Qwen3VLForConditionalGeneration._from_config(cfg, dtype=dtype, attn_implementation="sdpa")
    model.eval()
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    return model


def cpu_name() -> str:
    import os
    try:
        name = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        name = platform.processor() or platform.machine()
    return f"{name}, {os.cpu_count()} cores"


def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device="cpu"):
    sync(device)
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - t0, out


RUNS = 30   # timed repeats of each CPU-overhead figure


def median_ms(fn, n: int = 20) -> float:
    fn()
    xs = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        xs.append(time.perf_counter() - t0)
    return round(statistics.median(xs) * 1000, 3)


class Counter:
    """Progress hook: how many tokens the last generate call decoded."""

    def __init__(self):
        self.done = 0

    def __call__(self, done: int, budget: int) -> None:
        self.done = max(self.done, done)


def generate(backend, reqs, opts):
    c = Counter()
    out = backend.generate(reqs, opts, progress=c)
    return out, c.done


def noise_image(side: int, seed: int = 0):
    import numpy as np
    from PIL import Image
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (side, side, 3), dtype=np.uint8), "RGB")


def cpu_overheads(critic, side: int, new_tokens: int, rr_max_pixels: int = 802_816) -> dict:
    """CPU time per critique outside the model, IMAGE -> model inputs -> answer text -> parsed critique, timed
    end to end (median and best of ``RUNS``; the steps as medians):

    ``pack``: the IMAGE tensor goes to the core as it is (``Critic.build``) and the backend builds the model
    inputs in torch (``backends/qwen_inputs.py``: cached prompt tokens, no PIL, at most one resize);
    ``baseline_processor_path``, in the same run: the IMAGE through the pack's one tensor -> PIL conversion,
    ``Critic.build`` and the checkpoint's processor call (the pack's path before). Both decode a
    ``new_tokens`` answer and parse a full critique. ``at_max_pixels``: the same at the RationalRewards
    checkpoints' training size (802,816 px: a 1024^2 image is resized to 896^2)."""
    from dataclasses import replace

    from rationalrewards.critic.critic import Item
    from rationalrewards.critic.images import from_unit_floats
    from rationalrewards.judging.parser import parse_critique
    from rationalrewards.judging.rubric import Task
    from tests.unit.rr_sample_answers import T2I_FULL, huge_answer
    b = critic.backend
    prompt = "a red cat holding a sign that says HELLO"
    frame = torch.rand(1, side, side, 3, generator=torch.Generator().manual_seed(1))   # a ComfyUI IMAGE
    answer_ids = b.tokenizer(T2I_FULL, add_special_tokens=False)["input_ids"]
    answer_ids = (answer_ids * (new_tokens // max(1, len(answer_ids)) + 1))[:new_tokens]

    def ms(fn, n: int = RUNS) -> list[float]:
        fn()
        xs = []
        for _ in range(n):
            t0 = time.perf_counter()
            fn()
            sync(b.device)
            xs.append((time.perf_counter() - t0) * 1000)
        return xs

    def med(fn, n: int = RUNS) -> float:
        return round(statistics.median(ms(fn, n)), 3)

    def answer() -> None:
        parse_critique(b.tokenizer.batch_decode([answer_ids], skip_special_tokens=True)[0])
        parse_critique(T2I_FULL)             # the decoded ids of a random answer parse to little: a full one too

    def paths(c) -> dict:
        tensor_item = Item(Task.T2I, "pointwise", prompt, (frame[0],))
        req = c.build(tensor_item)
        b.encode([req])                       # the first batch is built both ways and compared (once per backend)
        fast = b.inputs

        def pack_path() -> None:
            b.encode([c.build(tensor_item)])
            answer()

        def baseline_path() -> None:
            [pil] = from_unit_floats(frame)
            b.processor_encode([c.build(Item(Task.T2I, "pointwise", prompt, (pil,)))])
            answer()

        [pil] = from_unit_floats(frame)
        pil_req = c.build(Item(Task.T2I, "pointwise", prompt, (pil,)))
        pack_ms, base_ms = [], []
        for _ in range(RUNS):                 # interleaved, so a change in the host's load hits both paths alike
            pack_ms += ms(pack_path, 1)
            base_ms += ms(baseline_path, 1)
        pack = {"total": round(statistics.median(pack_ms), 3), "best": round(min(pack_ms), 3),
                "build_prompt_and_image": med(lambda: c.build(tensor_item)),
                "model_inputs": med(lambda: b.encode([req])),
                "of_which_pixels": med(lambda: fast.pixel_rows(req.images[0], b.device)) if fast else None,
                "decode_and_parse": med(answer)}
        base = {"total": round(statistics.median(base_ms), 3), "best": round(min(base_ms), 3),
                "tensor_to_pil": med(lambda: from_unit_floats(frame)),
                "build_prompt_and_image": med(lambda: c.build(Item(Task.T2I, "pointwise", prompt, (pil,)))),
                "processor": med(lambda: b.processor_encode([pil_req]), 10),
                "decode_and_parse": pack["decode_and_parse"]}
        ours, ref = b.encode([req]), b.processor_encode([req])
        return {"pack": pack, "baseline_processor_path": base,
                "ratio_baseline_to_pack": round(base["total"] / pack["total"], 2),
                "torch_inputs": fast is not None,
                "same_inputs_as_processor": fast is not None and fast.differences(ours, ref, [req]) is None,
                "image_grid": ours["image_grid_thw"].tolist()[0], "prompt_tokens": int(ours["input_ids"].shape[1])}

    out = paths(critic)
    out["total"] = out["pack"]["total"]
    out["target_le_5ms"] = out["total"] <= 5.0
    out["at_max_pixels"] = {"max_pixels": rr_max_pixels, **paths(replace(critic, max_pixels=rr_max_pixels))}
    huge = huge_answer()                                  # robustness, not per-critique overhead: not in total
    out["parse_2mb"] = median_ms(lambda: parse_critique(huge), n=3)
    out["torch_threads"] = torch.get_num_threads()
    out["image_side"] = side
    out["runs"] = RUNS
    out["load_avg_1min_after"] = round(__import__("os").getloadavg()[0], 2)
    return out


def run(args) -> dict:
    import transformers
    from rationalrewards.backends.base import GenerationOptions
    from rationalrewards.backends.transformers_backend import TransformersBackend
    from rationalrewards.critic.critic import Critic, Item
    from rationalrewards.judging.parser import parse_critique
    from rationalrewards.runtime.residency import HostCopies, torch_pin, torch_unpin
    from rationalrewards.judging.rubric import Task

    gpu = not (args.cpu or args.dry_run)
    if gpu and not torch.cuda.is_available():
        raise SystemExit("GPU mode needs CUDA; use --cpu (overheads) or --dry-run (logic check)")
    device = "cuda" if gpu else "cpu"
    side = args.image or (1024 if not args.dry_run else 64)
    shape = "8b" if gpu else "tiny"
    dtype = torch.bfloat16 if gpu else torch.float32
    processor = build_processor(max_pixels=max(side * side, 64 * 64))
    t_build, model = timed(lambda: build_model(shape, processor, device, dtype), device)
    pack_mode = "auto" if gpu else ("compiled" if args.dry_run else "static")

    def backend(decoding: str, batch_size: int = 1) -> TransformersBackend:
        b = TransformersBackend(model, processor, batch_size=batch_size, decoding=decoding)
        if args.dry_run and decoding == "compiled":     # exercise torch.compile without a GPU toolchain
            from transformers import CompileConfig
            b.compile_config = CompileConfig(fullgraph=False, backend="eager", mode=None)
            b.compile_config._compile_all_devices = True
        return b

    plain, pack = backend("plain"), backend(pack_mode)
    critic = Critic(backend=pack)
    img = noise_image(side)
    req = critic.build(Item(Task.T2I, "pointwise", "a red cat holding a sign that says HELLO", (img,)))
    prompt_tokens = int(pack.encode([req])["input_ids"].shape[1])
    n = args.tokens or (384 if gpu else 64 if args.cpu else 24)
    opts = GenerationOptions(max_new_tokens=n, temperature=0)
    result: dict = {
        "mode": "gpu" if gpu else ("dry-run" if args.dry_run else "cpu"),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "device": torch.cuda.get_device_name() if gpu else cpu_name(),
        "torch": torch.__version__, "transformers": transformers.__version__,
        "shape": shape, "dtype": str(dtype).replace("torch.", ""), "params_b": round(
            sum(p.numel() for p in model.parameters()) / 1e9, 3),
        "build_s": round(t_build, 2), "image_side": side, "prompt_tokens": prompt_tokens, "new_tokens": n,
        "pack_decoding": pack.decoding_mode(),
        "load_avg_1min": round(__import__("os").getloadavg()[0], 2),
    }

    # 1. one critique at batch 1: plain generate vs the pack's path
    generate(plain, [req], GenerationOptions(max_new_tokens=2, temperature=0))        # CUDA/kernels warm
    t_plain, (out_plain, tok_plain) = timed(lambda: generate(plain, [req], opts), device)
    t_warm, _ = timed(lambda: generate(pack, [req], opts), device)                    # compiles (once)
    runs = [timed(lambda: generate(pack, [req], opts), device) for _ in range(args.repeats)]
    t_pack, (out_pack, tok_pack) = min(runs, key=lambda r: r[0])
    result["one_critique_batch1"] = {
        "baseline_plain_s": round(t_plain, 3), "pack_s": round(t_pack, 3), "pack_first_call_s": round(t_warm, 3),
        "speedup": round(t_plain / t_pack, 2), "tokens_plain": tok_plain, "tokens_pack": tok_pack,
        "baseline_ms_per_token": round(1000 * t_plain / max(1, tok_plain), 2),
        "pack_ms_per_token": round(1000 * t_pack / max(1, tok_pack), 2),
        "same_greedy_tokens": out_plain == out_pack}

    # 2. a batch: per-image time (left-padded, one generate call per batch)
    bs = args.batch or (16 if gpu else 4)
    reqs = [critic.build(Item(Task.T2I, "pointwise", f"candidate {i}: a red cat", (noise_image(side, i + 2),)))
            for i in range(bs)]
    pack_b = backend(pack_mode, bs)
    t_bwarm, _ = timed(lambda: generate(pack_b, reqs, opts), device)
    t_batch, (outs_b, tok_b) = timed(lambda: generate(pack_b, reqs, opts), device)
    bn = args.baseline_batch_tokens or n
    t_bplain, (_, tok_bplain) = timed(lambda: generate(backend("plain", bs), reqs,
                                                       GenerationOptions(max_new_tokens=bn, temperature=0)), device)
    result["batch"] = {
        "size": bs, "pack_per_image_s": round(t_batch / bs, 3), "pack_first_call_s": round(t_bwarm, 3),
        "tokens": tok_b, "baseline_tokens": tok_bplain,
        "baseline_per_image_s": round(t_bplain / bs * (tok_b / max(1, tok_bplain)), 3),
        "baseline_extrapolated": tok_bplain != tok_b}

    # 3. swap-in after offload: the adapter's host copies, pageable then pinned
    target = device                            # off the GPU every move is a no-op: only the bookkeeping runs
    host = HostCopies(model, pin=torch_pin if gpu else None, unpin=torch_unpin if gpu else None)
    gb = host.nbytes / 1e9
    first_off = host.to("cpu")
    pageable_in = host.to(target, pin=False)
    host.to("cpu")
    first_pinned_in = host.to(target, pin=True)
    cycles = [(host.to("cpu"), host.to(target)) for _ in range(2)]
    after, _ = generate(pack, [req], opts)
    result["swap_in"] = {
        "weights_gb": round(gb, 3), "first_offload_s": round(first_off, 3),
        "offload_s": round(min(c[0] for c in cycles), 4), "swap_in_pageable_s": round(pageable_in, 3),
        "first_pinned_swap_in_s": round(first_pinned_in, 3), "swap_in_pinned_s": round(min(c[1] for c in cycles), 3),
        "pinned_gb": round(host.pinned_bytes / 1e9, 3), "same_answer_after_swaps": after == out_pack,
        "simulated": not gpu}

    # 4. critique-refine loop next to a generator on a 24 GB budget
    loop = {"rounds": args.rounds, "rounds_ok": 0, "budget_gb": args.budget_gb, "generator_gb": args.generator_gb,
            "round_s": [], "errors": []}
    if gpu:
        host.to("cpu")
        torch.cuda.empty_cache()          # the benchmark's own bookkeeping, not the pack's habit
        total = torch.cuda.get_device_properties(0).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, args.budget_gb * 2**30 / total))
        torch.cuda.reset_peak_memory_stats()
    prompt = "a red cat holding a sign that says HELLO"
    for r in range(args.rounds):
        t0 = time.perf_counter()
        try:
            gen_bytes = int(args.generator_gb * 2**30) if gpu else 1 << 20
            generator = torch.empty(gen_bytes, dtype=torch.uint8, device=device)     # the generator's weights
            work = torch.randn(2048, 2048, device=device, dtype=dtype)
            for _ in range(8):
                work = torch.tanh(work @ work)                                        # ... and its sampling
            image = noise_image(side, 100 + r)
            del generator, work                  # ComfyUI evicts the generator to load the critic
            swap = host.to(target) if gpu else 0.0
            lreq = critic.build(Item(Task.T2I, "pointwise", prompt, (image,)))
            answer, _ = generate(pack, [lreq], GenerationOptions(max_new_tokens=args.loop_tokens or n, temperature=0))
            parsed = parse_critique(answer[0])
            prompt = parsed.refined_request or prompt
            if gpu:
                host.to("cpu")                   # critic's memory back to the generator
            loop["rounds_ok"] += 1
            loop["round_s"].append(round(time.perf_counter() - t0, 3))
            loop.setdefault("swap_in_s", []).append(round(swap, 3))
        except torch.OutOfMemoryError as e:
            loop["errors"].append(f"round {r}: OOM: {str(e).splitlines()[0]}")
            if gpu:
                host.to("cpu")
    if gpu:
        loop["peak_reserved_gb"] = round(torch.cuda.max_memory_reserved() / 2**30, 2)
        torch.cuda.set_per_process_memory_fraction(1.0)
    result["budget_loop"] = loop

    # 5. CPU overhead per critique outside the model
    if gpu:
        host.to(device)
    result["cpu_overhead_ms"] = cpu_overheads(critic, 1024 if not args.dry_run else side, n)
    host.release()

    o = result
    result["targets"] = {
        "one_critique_le_3s": o["one_critique_batch1"]["pack_s"] <= 3.0,
        "speedup_ge_10x": o["one_critique_batch1"]["speedup"] >= 10,
        "batch16_le_0.3s_per_image": o["batch"]["size"] >= 16 and o["batch"]["pack_per_image_s"] <= 0.3,
        "swap_in_le_0.4s": o["swap_in"]["swap_in_pinned_s"] <= 0.4,
        "budget_loop_no_oom": loop["rounds_ok"] == loop["rounds"],
        "cpu_overhead_le_5ms": o["cpu_overhead_ms"]["total"] <= 5.0,
    } if gpu else "not judged off the GPU"
    return result


def quantised(args) -> dict:
    """Load Critic's quantisation variants through the pack's loader (quantised while loading, as users do):
    weight memory (measured vs the memory plan), peak memory of one critique, swap-in (host -> device after
    an offload with ``model.to``, what the residency adapter does for a quantised critic), ms per token,
    and whether the answer is the same after the round trip.

    GPU: the Qwen3-VL-8B shape with random bf16 weights, saved once to a temporary folder (17.5 GB of disk)
    and loaded per variant. --dry-run: a tiny Qwen3-VL whose widths bitsandbytes' CPU kernels accept, on
    CPU (timings mean nothing there; the memory figures are the host's)."""
    import transformers
    from rationalrewards.runtime import memory_plan
    from rationalrewards.backends.base import GenerationOptions
    from rationalrewards.backends.transformers_backend import TransformersBackend
    from rationalrewards.critic.critic import Critic, Item
    from rationalrewards.judging.rubric import Task

    gpu = not (args.cpu or args.dry_run)
    if gpu and not torch.cuda.is_available():
        raise SystemExit("GPU mode needs CUDA; use --dry-run")
    device = "cuda" if gpu else "cpu"
    side = args.image or (1024 if gpu else 64)
    n = args.tokens or (128 if gpu else 8)
    variants = [v for v in (args.variants or "none,int8,4bit").split(",") if v]
    result: dict = {"mode": "quant-gpu" if gpu else "quant-dry-run",
                    "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                    "device": torch.cuda.get_device_name() if gpu else cpu_name(), "torch": torch.__version__,
                    "transformers": transformers.__version__, "bitsandbytes": _version("bitsandbytes"),
                    "image_side": side, "new_tokens": n, "variants": {}}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "critic"
        if gpu:
            processor = build_processor(max_pixels=side * side)
            model = build_model("8b", processor, device, torch.bfloat16)
            model.save_pretrained(folder)
            processor.save_pretrained(folder)
            del model
            torch.cuda.empty_cache()
        else:
            from tests.fixtures.tiny_critic import build_tiny_critic
            build_tiny_critic(folder, wide=True, max_pixels=max(side * side, 64 * 64))
        shape = memory_plan.shape_from_folder(folder)
        for q in variants:
            row: dict = {}
            try:
                if gpu:
                    torch.cuda.reset_peak_memory_stats()
                t_load, backend = timed(lambda: TransformersBackend.load(folder, dtype="bf16" if gpu else "fp32",
                                                                         device=device, quantization=q), device)
                critic = Critic(backend=backend)
                req = critic.build(Item(Task.T2I, "pointwise", "a red cat holding a sign", (noise_image(side),)))
                opts = GenerationOptions(max_new_tokens=n, temperature=0)
                generate(backend, [req], GenerationOptions(max_new_tokens=2, temperature=0))   # warm
                weights = backend.model.get_memory_footprint()
                if gpu:
                    torch.cuda.synchronize()
                    base = torch.cuda.memory_allocated()
                    torch.cuda.reset_peak_memory_stats()
                t_gen, (answer, tokens) = timed(lambda: generate(backend, [req], opts), device)
                peak = (torch.cuda.max_memory_allocated() - base + weights) if gpu else None
                t_off, _ = timed(lambda: backend.model.to("cpu"), device)
                t_in, _ = timed(lambda: backend.model.to(device), device)
                again, _ = generate(backend, [req], opts)
                planned = memory_plan.plan(shape, quantization=q, dtype="bf16" if gpu else "fp32",
                                           image_pixels=side * side, new_tokens=n)
                row.update(load_s=round(t_load, 2), quantization=backend.quantization,
                           weight_bytes=int(weights), planned_weight_bytes=int(planned.weights),
                           weight_gib=round(weights / 2**30, 3), planned_weight_gib=round(planned.weights / 2**30, 3),
                           peak_gib_per_critique=None if peak is None else round(peak / 2**30, 3),
                           planned_total_gib=round(planned.total / 2**30, 3),
                           offload_s=round(t_off, 3), swap_in_s=round(t_in, 3),
                           ms_per_token=round(1000 * t_gen / max(1, tokens), 2), tokens=tokens,
                           same_answer_after_swap=again == answer, simulated=not gpu)
                del critic, backend
            except Exception as e:   # one variant failing (e.g. bitsandbytes missing) must not lose the others
                row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            if gpu:
                torch.cuda.empty_cache()
            result["variants"][q] = row
    return result


def _version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cpu", action="store_true", help="tiny critic on CPU: overheads and small-model timings")
    p.add_argument("--dry-run", action="store_true", help="the GPU steps on a tiny config, on CPU")
    p.add_argument("--tokens", type=int, default=0, help="new tokens per critique (default 384; --cpu 64; dry-run 24)")
    p.add_argument("--batch", type=int, default=0, help="batch size of the batch test (default 16; off the GPU 4)")
    p.add_argument("--baseline-batch-tokens", type=int, default=0,
                   help="tokens for the plain-generate batch baseline (default: --tokens); fewer are "
                        "extrapolated linearly to save device time")
    p.add_argument("--image", type=int, default=0, help="image side in pixels (default 1024; dry-run 64)")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3, help="rounds of the 24 GB critique-refine loop")
    p.add_argument("--loop-tokens", type=int, default=0)
    p.add_argument("--budget-gb", type=float, default=24.0)
    p.add_argument("--generator-gb", type=float, default=6.5, help="simulated generator weights (SDXL fp16 ~6.5)")
    p.add_argument("--quant", action="store_true",
                   help="only the quantised variants (none/int8/4bit): weight and peak memory, swap-in, ms/token")
    p.add_argument("--variants", default="", help="with --quant: comma-separated subset of none,int8,4bit")
    p.add_argument("--json", type=Path, help="also write the result here")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory():
        result = quantised(args) if args.quant else run(args)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
