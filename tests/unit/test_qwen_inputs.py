"""Model inputs built in torch (backends/qwen_inputs.py) are the checkpoint processor's, on both tiny critics
(Qwen3-VL, Qwen2.5-VL) and with both image-processor backends (torch, PIL), and greedy answers are unchanged."""
from __future__ import annotations

import copy
import logging
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from rationalrewards.backends.base import GenerationOptions
from rationalrewards.backends.qwen_inputs import QwenInputs, Unsupported
from rationalrewards.backends.transformers_backend import TransformersBackend
from rationalrewards.critic.critic import Critic, Item
from rationalrewards.critic.images import TensorImage, from_unit_floats, to_uint8
from rationalrewards.judging.rubric import Task

GREEDY = GenerationOptions(max_new_tokens=12, temperature=0)


def fresh(critic: Critic, processor=None, batch_size: int = 4) -> TransformersBackend:
    """A backend of its own around the session's tiny model (tests change its state)."""
    b = critic.backend
    return TransformersBackend(b.model, processor or b.processor, batch_size=batch_size, source=b.source,
                               decoding="plain")


def pil_processor(processor):
    """A copy of ``processor`` whose image processor is the PIL/numpy backend of the same settings."""
    try:   # transformers >= 5.4 names the PIL processor apart
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil as Pil
    except ImportError:   # 4.57 - 5.3: the plain (numpy) class
        from transformers import Qwen2VLImageProcessor as Pil
    ip = processor.image_processor
    v = QwenInputs(processor).vision
    out = copy.copy(processor)
    out.image_processor = Pil(patch_size=ip.patch_size, merge_size=ip.merge_size,
                              temporal_patch_size=ip.temporal_patch_size, min_pixels=v.min_pixels,
                              max_pixels=v.max_pixels, image_mean=list(ip.image_mean), image_std=list(ip.image_std))
    return out


def smooth(h: int, w: int, channels: int = 3) -> torch.Tensor:
    """A ComfyUI-like image (H, W, C) in [0, 1]: gradients and a disc, so resizes are comparable."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    disc = ((yy - 0.4) ** 2 + (xx - 0.6) ** 2 < 0.08).float()
    img = torch.stack([xx, yy * 0.8 + 0.1, 0.5 * disc + 0.25 * xx * yy], -1)
    return img[..., :channels] if channels != 1 else img.mean(-1, keepdim=True)


def requests(critic: Critic, max_pixels: int | None = None):
    """A batch covering every case: no resize, resizes to the grid (down, up, odd sizes), greyscale, a
    PIL image beside tensors, Edit (two images) and pairwise, prompts of different lengths (padding)."""
    c = replace(critic, max_pixels=max_pixels)
    noise = torch.rand(64, 64, 3, generator=torch.Generator().manual_seed(3))
    pil = Image.effect_noise((70, 90), 60).convert("RGB")
    items = [Item(Task.T2I, "pointwise", "a red cat", (noise,)),
             Item(Task.T2I, "pointwise", "a green dog with a long tail and a hat", (smooth(48, 96),)),
             Item(Task.T2I, "pointwise", "grey", (smooth(37, 150, 1),)),
             Item(Task.EDIT, "pointwise", "make the sky purple", (pil, smooth(80, 80))),
             Item(Task.T2I, "pairwise", "a red cat", (smooth(300, 200), torch.rand(64, 96, 3)))]
    return [c.build(it) for it in items]


def assert_same(ours, reference) -> None:
    assert set(reference) <= set(ours)
    for key in reference:
        assert ours[key].dtype == reference[key].dtype, key
        assert torch.equal(ours[key], reference[key]), key


@pytest.mark.parametrize("backend_kind", ["torch", "pil"])
def test_torch_built_inputs_are_the_processors(tiny_critic, backend_kind):
    processor = tiny_critic.backend.processor
    processor = processor if backend_kind == "torch" else pil_processor(processor)
    b = fresh(tiny_critic, processor)
    assert b.inputs is not None and b.inputs.vision.torch_resize == (backend_kind == "torch")
    reqs = requests(tiny_critic)
    ours, reference = b.inputs.encode(reqs), b.processor_encode(reqs)
    assert_same(ours, reference)
    assert b.inputs.differences(ours, reference, reqs) is None
    assert set(b.inputs.encode(reqs)) == set(reference)           # the processor's keys, no more
    assert_same(b.encode(reqs[:2]), b.processor_encode(reqs[:2]))   # through the backend (checked, then fast)
    assert b.inputs_checked and b.inputs is not None


def test_an_image_over_max_pixels_is_resized_once_to_the_grid(tiny_critic):
    """Where the critic's max_pixels binds, the torch path resizes once from the 8-bit original straight to the
    processor's grid for the fitted size; the processor path resizes twice (the PIL fit, then its grid). Same
    grid and tokens; pixel values within the difference of one resize against two."""
    b = fresh(tiny_critic)
    x = smooth(300, 500)
    [req] = [replace(tiny_critic, max_pixels=6000).build(Item(Task.T2I, "pointwise", "a red cat", (x,)))]
    assert req.images[0].size == (100, 60)
    ours, reference = b.inputs.encode([req]), b.processor_encode([req])
    assert_same({k: v for k, v in ours.items() if k != "pixel_values"},
                {k: v for k, v in reference.items() if k != "pixel_values"})
    th, tw = b.inputs.target_size(req.images[0])
    from torchvision.transforms.v2 import functional as tvF
    once = tvF.resize(torch.from_numpy(to_uint8(x)).permute(2, 0, 1)[None], [th, tw],
                      interpolation=tvF.InterpolationMode.BICUBIC, antialias=True)[0].permute(1, 2, 0)
    single = b.processor.image_processor(images=[Image.fromarray(once.numpy())], return_tensors="pt")
    assert torch.equal(ours["pixel_values"], single["pixel_values"])       # one resize, the processor's kind
    diff = (ours["pixel_values"] - reference["pixel_values"]).abs()
    assert diff.mean() < 0.01 and diff.max() < 0.2     # < 1.3 levels of 255 on average, < 26 at the disc edge
    assert b.inputs.differences(ours, reference, [req]) is None


def test_prompt_text_is_tokenized_once_per_template_and_request(tiny_critic, monkeypatch):
    b = fresh(tiny_critic)
    calls = []
    real = b.processor.apply_chat_template
    monkeypatch.setattr(b.processor, "apply_chat_template", lambda *a, **k: calls.append(1) or real(*a, **k))
    c = tiny_critic
    for seed in range(3):      # new images, same template and request
        img = torch.rand(64, 64, 3, generator=torch.Generator().manual_seed(seed))
        b.inputs.encode([c.build(Item(Task.T2I, "pointwise", "a red cat", (img,)))])
    assert len(calls) == 1
    b.inputs.encode([c.build(Item(Task.T2I, "pointwise", "a blue cat", (smooth(64, 64),)))])
    b.inputs.encode([c.build(Item(Task.T2I, "pairwise", "a red cat", (smooth(64, 64), smooth(64, 64))))])
    assert len(calls) == 3


def test_greedy_answers_are_the_processor_paths(tiny_critic):
    """IMAGE tensors through the torch path answer exactly like before: the tensor made PIL by the one
    conversion and read by the checkpoint's processor (the processor path), batched and one by one."""
    reqs = requests(tiny_critic)
    fast = fresh(tiny_critic)
    answers = fast.generate(reqs, GREEDY)
    assert fast.inputs is not None and fast.inputs_checked
    before = fresh(tiny_critic)
    before.inputs = None
    assert before.generate(reqs, GREEDY) == answers
    assert [fresh(tiny_critic, batch_size=1).generate([r], GREEDY)[0] for r in reqs] == answers


def test_a_first_batch_that_differs_hands_the_work_back_to_the_processor(qwen3_critic, monkeypatch, caplog):
    b = fresh(qwen3_critic)
    real = b.inputs._patches
    monkeypatch.setattr(b.inputs, "_patches", lambda levels: real(levels) + 1e-6)
    reqs = requests(qwen3_critic)[:2]
    with caplog.at_level(logging.WARNING, logger="RationalRewards"):
        got = b.encode(reqs)
    assert "pixel_values differ" in caplog.text and "the processor builds them from now on" in caplog.text
    assert b.inputs is None
    assert_same(got, b.processor_encode(reqs))
    assert_same(b.encode(reqs), b.processor_encode(reqs))


def test_a_processor_it_does_not_mirror_is_left_to_itself(qwen3_critic):
    other = copy.copy(qwen3_critic.backend.processor)
    other.image_processor = copy.copy(other.image_processor)
    other.image_processor.resample = Image.Resampling.BILINEAR
    with pytest.raises(Unsupported, match="bicubic"):
        QwenInputs(other)
    b = fresh(qwen3_critic, other)
    assert b.inputs is None
    reqs = requests(qwen3_critic)[:1]
    assert_same(b.encode(reqs), b.processor_encode(reqs))


def test_tensor_and_its_pil_image_give_the_same_pixels(tiny_critic):
    """The torch path reads a tensor's 8-bit levels by the same rounding as the tensor -> PIL conversion."""
    q = fresh(tiny_critic).inputs
    x = torch.from_numpy(np.resize(((np.arange(255) + 0.5) / 255).astype(np.float32), (48, 96, 3)).copy())
    [pil] = from_unit_floats(x[None])
    for a, b in ((TensorImage(x), pil), (TensorImage(x[8:40, 16:80]), pil.crop((16, 8, 80, 40)))):
        rows_t, grid_t = q.pixel_rows(a)
        rows_p, grid_p = q.pixel_rows(b)
        assert grid_t == grid_p and torch.equal(rows_t, rows_p)
