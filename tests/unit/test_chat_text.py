"""What a text-only runtime is sent: the published request as the chat text Qwen3-VL's template renders, and
images at the size the checkpoint's processor would give them."""
from __future__ import annotations

import pytest
from PIL import Image

from rationalrewards.backends.base import GenerationOptions
from rationalrewards.critic.chat_text import IMAGE_PLACEHOLDER, PromptsOnly, chat_text, image_count
from rationalrewards.critic.critic import Critic, Item
from rationalrewards.critic.qwen_resize import fit_processor, processor_size
from rationalrewards.errors import RationalRewardsError
from rationalrewards.judging.rubric import Task

IMG = Image.new("RGB", (64, 48), (10, 200, 30))
ITEMS = [Item(Task.T2I, "pointwise", "a red fox", (IMG,)), Item(Task.EDIT, "pointwise", "make it night", (IMG, IMG)),
         Item(Task.T2I, "pairwise", "a car", (IMG, IMG)), Item(Task.EDIT, "pairwise", "add a hat", (IMG, IMG, IMG))]


@pytest.mark.parametrize("item", ITEMS, ids=lambda i: f"{i.task.value}_{i.mode}")
def test_the_chat_text_is_what_the_checkpoints_chat_template_renders(qwen3_critic, item):
    request = qwen3_critic.prepare(item).chat
    processor = qwen3_critic.backend.processor
    rendered = processor.apply_chat_template(qwen3_critic.backend._messages(request), add_generation_prompt=True,
                                             tokenize=False)
    text = chat_text(request)
    assert text == rendered
    assert text.startswith("<|im_start|>system\n" if request.system else "<|im_start|>user\n")
    assert image_count(text) == len(item.images)
    assert text.count(IMAGE_PLACEHOLDER) == len(item.images)


def test_a_prompts_only_critic_renders_and_refuses_to_answer():
    critic = Critic(PromptsOnly(), max_pixels=1000)
    request = critic.prepare(ITEMS[0])
    assert request.chat.images[0].width * request.chat.images[0].height <= 1000      # max_pixels applied as usual
    with pytest.raises(RationalRewardsError, match="only writes prompts.*Read Critique"):
        critic.answer([request], GenerationOptions())


@pytest.mark.parametrize("size", [(64, 96), (70, 50), (200, 150), (1000, 700), (33, 2000), (4000, 3000), (17, 17)])
@pytest.mark.parametrize("limits", [(1024, 16384), (65_536, 16_777_216)])
def test_the_resize_rule_is_the_processors(size, limits):
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

    w, h = size
    assert processor_size(h, w, 32, *limits) == smart_resize(h, w, factor=32, min_pixels=limits[0], max_pixels=limits[1])
    fitted = fit_processor(Image.new("RGB", size), 32, *limits)
    assert (fitted.height, fitted.width) == processor_size(h, w, 32, *limits)


def test_an_image_already_at_the_processors_size_is_not_touched():
    img = Image.new("RGB", (64, 96))
    assert fit_processor(img, 32, 1024, 16384) is img


def test_pixels_match_the_processors_own_resize(qwen3_critic):
    """fit_processor (PIL bicubic on 8-bit pixels) then the processor, against the processor's own resize:
    the same grid, and pixels within one 8-bit level (transformers 5 resizes with torchvision's bicubic, which
    rounds a few pixels the other way; its PIL processor gives the very same pixels)."""
    import numpy as np
    import torch

    g = torch.Generator().manual_seed(0)
    img = Image.fromarray((torch.rand(50, 70, 3, generator=g) * 255).to(torch.uint8).numpy())
    proc = qwen3_critic.backend.processor.image_processor
    ours = proc(images=[fit_processor(img, 32, 1024, 16384)], return_tensors="pt")
    theirs = proc(images=[img], return_tensors="pt")
    assert ours["image_grid_thw"].tolist() == theirs["image_grid_thw"].tolist()
    diff = np.abs(ours["pixel_values"].numpy() - theirs["pixel_values"].numpy())
    level = (1 / 255) / 0.5                       # one 8-bit level after the processor's mean/std of 0.5
    assert diff.max() <= level + 1e-6 and (diff > 1e-6).mean() < 0.01
