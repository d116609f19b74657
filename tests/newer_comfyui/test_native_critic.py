"""The native critic on a ComfyUI with its own Qwen3-VL (>= 0.25; run on 0.33.0): the exported file loads
through ComfyUI's real loader, and the same tiny weights answer alike through transformers and ComfyUI.

The tiny size is registered with ComfyUI in this process only (tests/fixtures/native_tiny.py). The native
side is the pack as ComfyUI imports it (``pack``: its own copy of the core), the reference is the headless
``rationalrewards``; they meet in plain values (answers, options as keyword arguments).
"""
from __future__ import annotations

import logging

import pytest
import torch
from PIL import Image

from rationalrewards.backends.base import GenerationOptions
from rationalrewards.critic.critic import Item
from rationalrewards.critic.qwen_resize import processor_size
from rationalrewards.judging.rubric import Task
from rationalrewards.runtime.loader import load_critic
from rationalrewards.toolkit.export import file_metadata

GREEDY = GenerationOptions(max_new_tokens=10, temperature=0)


def load_file_clip(path):
    """The file through ComfyUI's own text-encoder loader, as Load CLIP and the native loader call it."""
    import comfy.sd
    return comfy.sd.load_clip(ckpt_paths=[str(path)], clip_type=comfy.sd.CLIPType.STABLE_DIFFUSION)


class Native:
    """The pack's core (as ComfyUI imports it) around ComfyUI's Qwen3-VL loaded from an exported file."""

    def __init__(self, pack, path):
        self.core = {m: pack(f"models.{m}") for m in ("critic.critic", "backends.base", "judging.rubric")}
        nb = pack("nodes.native_backend")
        meta = file_metadata(path)
        self.backend = nb.ComfyQwen3VLBackend(load_file_clip(path), meta["source"], int(meta["image_min_pixels"]),
                                              int(meta["image_max_pixels"]))
        self.critic = self.core["critic.critic"].Critic(backend=self.backend)

    def options(self, options: GenerationOptions):
        return self.core["backends.base"].GenerationOptions(**vars(options))

    def item(self, item: Item):
        task = self.core["judging.rubric"].Task(item.task.value)
        return self.core["critic.critic"].Item(task, item.mode, item.request, item.images)

    def run(self, items, options: GenerationOptions) -> list[str]:
        return self.critic.run([self.item(i) for i in items], self.options(options))

    def chat(self, item: Item):
        return self.critic.prepare(self.item(item)).chat

    def generate(self, items, options: GenerationOptions, **kw) -> list[str]:
        return self.backend.generate([self.chat(i) for i in items], self.options(options), **kw)


@pytest.fixture
def native(pack, exported, tiny_size):
    """``native(fmt)`` -> the pack's critic over ComfyUI's Qwen3-VL, loaded from the exported file."""
    return lambda fmt="bf16": Native(pack, exported[fmt])


@pytest.fixture(scope="module")
def reference(native_folder):
    """The transformers critic of the same weights (fp32, the processor's own image sizes)."""
    return load_critic(native_folder.name, [native_folder.parent], dtype="fp32", device="cpu", max_pixels=0,
                       batch_size=1, decoding="plain")


def picture(w: int, h: int, seed: int) -> Image.Image:
    g = torch.Generator().manual_seed(seed)
    return Image.fromarray((torch.rand(h, w, 3, generator=g) * 255).to(torch.uint8).numpy())


# processor limits of the tiny checkpoint: 1,024..16,384 px, multiples of 32
KEPT, ROUNDED, SHRUNK = picture(64, 96, 1), picture(70, 50, 2), picture(200, 150, 3)
ITEMS = [Item(Task.T2I, "pointwise", "a red fox in the snow", (KEPT,)),
         Item(Task.EDIT, "pointwise", "make the sky purple", (ROUNDED, KEPT)),
         Item(Task.T2I, "pairwise", "a blue car", (SHRUNK, KEPT)),
         Item(Task.EDIT, "pairwise", "add a hat", (KEPT, ROUNDED, SHRUNK))]


def test_the_images_cover_both_sides_of_comfyuis_resize():
    sizes = [(img.height, img.width) for img in (KEPT, ROUNDED, SHRUNK)]
    resized = [processor_size(h, w, 32, 1024, 16384) != (h, w) for h, w in sizes]
    assert resized == [False, True, True]


@pytest.mark.parametrize("fmt", ["bf16", "fp8"])
def test_the_exported_file_loads_through_comfyuis_loader_with_no_missing_or_unexpected_keys(
        pack, exported, tiny_size, caplog, fmt):
    import comfy.sd
    caplog.set_level(logging.DEBUG)
    with open(exported[fmt], "rb"):
        sd = comfy.utils.load_torch_file(str(exported[fmt]))
    assert comfy.sd.detect_te_model(sd) is comfy.sd.TEModel.QWEN3VL_8B     # detected as a Qwen3-VL file
    clip = load_file_clip(exported[fmt])
    complaints = [r.getMessage() for r in caplog.records if r.getMessage().startswith(("clip missing", "clip unexpected"))]
    assert not complaints, complaints
    encoder = pack("nodes.native_backend").qwen3vl_encoder(clip)
    assert encoder is not None
    formats = {getattr(m, "quant_format", None) for m in encoder.modules()}
    assert ("float8_e4m3fn" in formats) is (fmt == "fp8")                   # fp8 weights stay fp8 in ComfyUI


def test_greedy_answers_are_the_same_through_transformers_and_comfyui(native, reference):
    """All four templates, 1-3 images, images ComfyUI would resize and images it would not."""
    critic = native("bf16")
    for item in ITEMS:
        [want] = reference.run([item], GREEDY)
        [got] = critic.run([item], GREEDY)
        assert got == want, (item.task, item.mode)
        assert want.strip()


def test_sampling_follows_the_same_seed_and_parameters_on_both(native, reference):
    critic = native("bf16")
    item = ITEMS[0]
    for options in (GenerationOptions(max_new_tokens=8, temperature=1.0, top_p=0.9, seed=7),
                    GenerationOptions(max_new_tokens=8, temperature=0.7, top_k=50, seed=3, repetition_penalty=1.3)):
        assert critic.run([item], options) == reference.run([item], options)
    a, b = (critic.run([item], GenerationOptions(max_new_tokens=8, temperature=1.0, seed=s)) for s in (1, 2))
    assert a != b


def test_forced_answers_progress_stream_and_stop(native):
    critic = native("bf16")
    ticks, texts = [], []
    budget = GenerationOptions(max_new_tokens=64, temperature=0)
    [answer] = critic.generate([ITEMS[0]], budget, forced=["## Score: 3"], progress=lambda d, t: ticks.append((d, t)),
                               stream=lambda i, rows, done: texts.append((i, rows[0], done)))
    assert answer == "## Score: 3"
    assert ticks[0] == (1, 64) and ticks[-1][0] == len(ticks) < 64
    assert texts[-1] == (0, "## Score: 3", True)
    asked = []
    stopped = critic.core["backends.base"].GenerationInterrupted
    with pytest.raises(stopped):
        critic.generate([ITEMS[0]], budget, should_stop=lambda: asked.append(1) or len(asked) >= 3)
    assert len(asked) == 3


def test_a_batch_is_answered_in_order_one_at_a_time(native):
    critic = native("bf16")
    forced = ["first", "second answer"]
    assert critic.backend.batch_size == 1
    assert critic.generate(ITEMS[:2], GREEDY, forced=forced) == forced


def test_the_critic_is_a_model_comfyui_loads_and_unloads(native):
    import comfy.model_management as mm
    critic = native("bf16")
    patcher = critic.backend.clip.patcher
    mm.unload_all_models()
    critic.run([ITEMS[0]], GenerationOptions(max_new_tokens=2, temperature=0))
    assert any(m.model is patcher for m in mm.current_loaded_models)       # loaded by ComfyUI's manager
    mm.unload_all_models()
    assert not any(m.model is patcher for m in mm.current_loaded_models)


def test_fp8_file_answers_measured_against_bf16(native, capsys):
    """fp8 vs bf16 greedy answers of the tiny critic, recorded (random weights: a worst case for fp8, whose
    per-tensor scale is set by the largest weight)."""
    bf16, fp8 = native("bf16"), native("fp8")
    same = total = 0
    for item in ITEMS:
        ids = [side.backend.token_ids(side.generate([item], GREEDY)[0]) for side in (bf16, fp8)]
        agree = next((i for i, (a, b) in enumerate(zip(*ids)) if a != b), min(map(len, ids)))
        same, total = same + agree, total + len(ids[0])
        assert ids[1], "the fp8 file wrote nothing"
    with capsys.disabled():
        print(f"\nfp8 vs bf16 (tiny random critic, greedy, 4 templates): {same}/{total} tokens agree before the "
              "first difference")
