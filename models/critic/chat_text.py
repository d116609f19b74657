"""A request as the one chat text Qwen3-VL's chat template renders from it (ChatML with image pads).

Why: a runtime that takes text, not messages -- ComfyUI's own Qwen3-VL (core TextGenerate, the pack's
native critic), any raw-completion server -- can still be sent the published layout exactly: the system
message, the user message with each image where its template's ``<image>`` marker was, and the opening
of the assistant turn. The text starts with ``<|im_start|>``, which is what ComfyUI's Qwen3-VL tokenizer
takes as "already templated" (it then adds no template of its own and no empty ``<think>`` block); each
``<|image_pad|>`` in it takes the next image, in order.
"""
from __future__ import annotations

from ..backends.base import Backend
from ..errors import RationalRewardsError
from .prompting import ChatRequest

IM_START, IM_END = "<|im_start|>", "<|im_end|>"
IMAGE_PLACEHOLDER = "<|vision_start|><|image_pad|><|vision_end|>"   # one per image, expanded by the runtime
IMAGE_PAD = "<|image_pad|>"


def chat_text(request: ChatRequest) -> str:
    """The text Qwen3-VL's chat template (``add_generation_prompt=True``) renders for ``request``."""
    user = "".join(IMAGE_PLACEHOLDER if kind == "image" else str(part) for kind, part in request.parts)
    system = f"{IM_START}system\n{request.system}{IM_END}\n" if request.system else ""
    return f"{system}{IM_START}user\n{user}{IM_END}\n{IM_START}assistant\n"


def image_count(text: str) -> int:
    """How many images a chat text places (each ``<|image_pad|>`` takes one)."""
    return text.count(IMAGE_PAD)


class PromptsOnly(Backend):
    """The backend of a critic that only renders prompts (:meth:`Critic.prepare`): the answer comes from a
    text generator outside the pack (core TextGenerate, another VLM pack) and is read back by the parser."""

    name = "prompts-only"

    @property
    def model_name(self) -> str:
        return "a text generator outside the pack"

    def generate(self, requests, options, *, forced=None, progress=None, should_stop=None, stream=None):
        raise RationalRewardsError("this critic only writes prompts (chat text for another text generator); it "
                                   "answers nothing itself. Read that generator's answer with Read Critique")
