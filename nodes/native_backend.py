"""The critic run by ComfyUI's own Qwen3-VL (ComfyUI >= 0.25): a core ``Backend`` over a ComfyUI ``CLIP``.

Why: ComfyUI then manages the critic like any model it loads -- dynamic VRAM and weight streaming,
pinned memory, offload, fp8 files, AMD and Apple -- with no transformers model, bitsandbytes or residency
adapter of the pack's. The weights come from one file in ``models/text_encoders/`` (``rationalrewards
export`` writes it) or from a CLIP any loader gives.

What is ComfyUI's and what is the pack's:

* the prompt: ``Critic.prepare`` renders the published template as for every backend; it is sent as the
  one chat text Qwen3-VL's chat template would render (``critic/chat_text.py``), which ComfyUI's tokenizer
  takes untouched (it starts with ``<|im_start|>``); each ``<|image_pad|>`` takes the next image;
* the images: after ``max_pixels``, each is resized to the processor's size with the processor's filter
  (``critic/qwen_resize.py``), so ComfyUI's own bilinear resize has nothing left to do and the critic
  sees what the transformers backend would show it;
* the model, its loading onto the device (``load_models_gpu``, with room for the KV cache and prefill the
  memory plan computes), the forward pass, the KV cache and the tokenizer: ComfyUI's;
* the decoding loop is the pack's (it mirrors ComfyUI's ``BaseGenerate.generate``), because the contract
  asks for what ComfyUI's ``generate`` has no hook for: per-token progress and Cancel through the node,
  the text so far, scripted (forced) answers, and the pack's sampling rule (``backends/sampling.py``:
  the same seed, temperature, top-k/top-p and repetition penalty as the transformers backend, the penalty
  over the prompt and the answer as transformers applies it; ComfyUI's own penalises the answer only).

ComfyUI's Qwen3-VL runs one sequence at a time, so ``batch_size`` is 1: a batch of images is critiqued
one after the other.
"""
from __future__ import annotations

import logging
import re
from typing import Sequence

import numpy as np
import torch

import comfy.model_management as mm

from ..models.backends.base import Backend, GenerationInterrupted, GenerationOptions, ProgressFn, StopFn, StreamFn
from ..models.backends.sampling import penalize_repetition, sample
from ..models.critic.chat_text import chat_text
from ..models.critic.prompting import ChatRequest
from ..models.critic.qwen_resize import QWEN3_VL_FACTOR, QWEN3_VL_MAX_PIXELS, QWEN3_VL_MIN_PIXELS, fit_processor
from ..models.runtime import memory_plan

log = logging.getLogger("RationalRewards")

NATIVE_SINCE = "0.25"                 # ComfyUI release with native Qwen3-VL text generation (June 2026)
IMAGE_PAD_ID = 151655                 # <|image_pad|> in Qwen's vocabulary
IM_END_ID = 151645                    # <|im_end|>: what a forced answer ends with (as the transformers backend)
STREAM_EVERY = 8                      # tokens between two looks at the text written so far


def comfyui_version() -> str:
    try:
        import comfyui_version
        return str(comfyui_version.__version__)
    except ImportError:
        return "unknown"


def native_support() -> str | None:
    """None when this ComfyUI runs Qwen3-VL itself; else why not, naming the version needed."""
    try:
        import comfy.text_encoders.qwen3vl as qwen3vl  # noqa: F401
        from comfy.text_encoders.llama import BaseGenerate
    except ImportError:
        return (f"the native critic needs ComfyUI {NATIVE_SINCE} or newer (its own Qwen3-VL, "
                f"comfy/text_encoders/qwen3vl.py); this ComfyUI is {comfyui_version()}. Update ComfyUI, or load "
                "the critic with Load RationalRewards Critic (transformers) or Connect to Critic Server")
    missing = [n for n in ("init_kv_cache", "logits") if not hasattr(BaseGenerate, n)]
    if missing or not hasattr(qwen3vl.Qwen3VL, "build_image_inputs"):
        return (f"this ComfyUI ({comfyui_version()}) has a Qwen3-VL whose decoding parts the native critic does "
                f"not know ({', '.join(missing) or 'build_image_inputs'}); update the RationalRewards pack")
    return None


def qwen3vl_encoder(clip):
    """ComfyUI's Qwen3-VL inside a CLIP (``Qwen3VLClipModel``), or None for any other text encoder."""
    import comfy.text_encoders.qwen3vl as qwen3vl

    model = getattr(clip, "cond_stage_model", None)
    inner = getattr(model, getattr(model, "clip", ""), None)
    return inner if isinstance(inner, qwen3vl.Qwen3VLClipModel) else None


def to_image_tensor(img) -> torch.Tensor:
    """A PIL image as a ComfyUI IMAGE of one ([1, H, W, 3] floats in [0, 1])."""
    return torch.from_numpy(np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0)[None]


class ComfyQwen3VLBackend(Backend):
    """Answers with ComfyUI's own Qwen3-VL, loaded and placed by ComfyUI's memory manager.

    Args:
        clip: a ComfyUI ``CLIP`` holding a Qwen3-VL (from CLIPLoader, or ``comfy.sd.load_clip``).
        name: what records call the model (the file name).
        min_pixels, max_pixels: the checkpoint processor's resize limits (``rationalrewards export`` records
            them in the file; Qwen3-VL's own by default).
    """

    name = "comfyui"
    batch_size = 1

    def __init__(self, clip, name: str, min_pixels: int = QWEN3_VL_MIN_PIXELS, max_pixels: int = QWEN3_VL_MAX_PIXELS):
        self.encoder = qwen3vl_encoder(clip)
        if self.encoder is None:
            raise TypeError("this CLIP is not a Qwen3-VL text encoder; load a RationalRewards (Qwen3-VL) file")
        self.clip, self.label = clip, name
        self.min_pixels, self.max_pixels = min_pixels, max_pixels

    @property
    def model_name(self) -> str:
        return self.label

    # -- the pieces -----------------------------------------------------------------------------------
    def images(self, request: ChatRequest) -> list:
        """The request's images at the processor's size (ComfyUI's own resize then leaves them as they are)."""
        return [fit_processor(img, QWEN3_VL_FACTOR, self.min_pixels, self.max_pixels) for img in request.images]

    def tokenize(self, request: ChatRequest, images: Sequence) -> dict:
        return self.clip.tokenize(chat_text(request), images=[to_image_tensor(i) for i in images],
                                  skip_template=True)

    def token_ids(self, text: str) -> list[int]:
        """``text`` in ComfyUI's tokens, no template (what a forced answer is made of)."""
        rows = next(iter(self.clip.tokenize(text, skip_template=True).values()))
        return [int(t[0]) for t in rows[0]]

    def runtime_bytes(self, text_tokens: int, images: Sequence, new_tokens: int, dtype_bytes: int) -> int:
        """What one answer needs beside the weights (KV cache, vision, prefill, reserve): the memory plan's
        figure for this model's shape, prompt and images."""
        shape = memory_plan.shape_from_config(native_config(self.encoder.transformer))
        pixels = max((img.width * img.height for img in images), default=0)
        plan = memory_plan.plan(shape, dtype="fp32" if dtype_bytes == 4 else "bf16", new_tokens=new_tokens,
                                text_tokens=text_tokens, images_per_item=len(images), image_pixels=pixels or 1)
        return plan.runtime

    # -- the contract ---------------------------------------------------------------------------------
    def generate(self, requests: Sequence[ChatRequest], options: GenerationOptions, *,
                 forced: Sequence[str | None] | None = None, progress: ProgressFn | None = None,
                 should_stop: StopFn | None = None, stream: StreamFn | None = None) -> list[str]:
        forced = list(forced) if forced is not None else [None] * len(requests)
        if len(forced) != len(requests):
            raise ValueError("forced must have one entry per request")
        answers = []
        for i, (request, target) in enumerate(zip(requests, forced)):
            answer = self._answer(request, options, target, progress, should_stop,
                                  (lambda text, done, i=i: stream(i, [text], done)) if stream else None)
            answers.append(answer)
        return answers

    @torch.inference_mode()
    def _answer(self, request: ChatRequest, options: GenerationOptions, forced: str | None,
                progress: ProgressFn | None, should_stop: StopFn | None, stream) -> str:
        images = self.images(request)
        tokens = self.tokenize(request, images)
        target = self.token_ids(forced) if forced is not None else None
        rows = next(iter(tokens.values()))
        ids = [[t[0] for t in row] for row in rows]
        prompt_ids = [int(t) for t in ids[0] if isinstance(t, int)] + ([IMAGE_PAD_ID] if request.images else [])
        encoder, lm = self.encoder, self.encoder.transformer
        model = self.clip.cond_stage_model
        model.reset_clip_options()
        device = self.clip.patcher.load_device
        dtype = torch.bfloat16 if mm.should_use_bf16(device) else torch.float32
        budget = options.max_new_tokens
        need = self.runtime_bytes(len(ids[0]) - len(images), images, budget, 2 if dtype == torch.bfloat16 else 4)
        mm.load_models_gpu([self.clip.patcher], memory_required=need)   # ComfyUI makes room (evicting what it must)
        model.set_clip_options({"layer": None, "execution_device": device})
        stops = set(lm.model.config.stop_tokens)
        generators = ([torch.Generator(device=device).manual_seed(options.seed)] if options.temperature > 0 else [])
        generated: list[int] = []
        with mm.cuda_device_context(device):
            embeds, _, _, info = encoder.process_tokens(ids, device)
            position_ids, visual_mask, deepstack = lm.build_image_inputs(embeds, info)
            embeds = embeds.to(dtype)
            cache = lm.init_kv_cache(embeds.shape[0], embeds.shape[1] + budget, device, dtype)
            next_pos = int(position_ids[:, -1].max()) + 1 if position_ids is not None else None
            seen = torch.tensor([prompt_ids], device=device, dtype=torch.long)
            for step in range(budget):
                extra = ({"deepstack_embeds": deepstack, "visual_pos_masks": visual_mask}
                         if step == 0 and deepstack is not None else {})
                x, _, cache = lm.model.forward(None, embeds=embeds, attention_mask=None, past_key_values=cache,
                                               input_ids=None, position_ids=position_ids,
                                               embeds_info=info if step == 0 else None, **extra)
                scores = penalize_repetition(lm.logits(x)[:, -1].float(), seen, options.repetition_penalty)
                if target is not None:
                    token = target[step] if step < len(target) else IM_END_ID
                elif generators:
                    token = int(sample(scores, options.temperature, options.top_p, options.top_k, generators)[0, 0])
                else:
                    token = int(scores.argmax(dim=-1)[0])
                generated.append(token)
                seen = torch.cat([seen, torch.tensor([[token]], device=device)], dim=1)
                if progress is not None:
                    progress(step + 1, budget)
                if stream is not None and (step + 1) % STREAM_EVERY == 1:
                    stream(self.clip.decode(generated), False)
                if token in stops:
                    break
                if should_stop is not None and should_stop():
                    raise GenerationInterrupted("critique generation was interrupted")
                embeds = lm.model.embed_tokens(torch.tensor([[token]], device=device)).to(dtype)
                if next_pos is not None:          # MRoPE: decoding continues from the prompt's last position
                    position_ids = torch.tensor([[next_pos]], device=device)
                    next_pos += 1
        text = self.clip.decode(generated)
        if stream is not None:
            stream(text, True)
        return text


def native_config(lm) -> dict:
    """ComfyUI's Qwen3-VL (its config dataclass and vision table) as the HF ``config.json`` dict the memory
    plan reads."""
    import comfy.text_encoders.qwen3vl as qwen3vl

    cfg = lm.model.config
    heads = cfg.num_attention_heads
    vision = {**qwen3vl.QWEN3VL_VISION_COMMON, **qwen3vl.QWEN3VL_VISION[lm.model_type]}
    return {"model_type": "qwen3_vl", "tie_word_embeddings": not getattr(cfg, "lm_head", True),
            "text_config": {"hidden_size": cfg.hidden_size, "intermediate_size": cfg.intermediate_size,
                            "num_hidden_layers": cfg.num_hidden_layers, "num_attention_heads": heads,
                            "num_key_value_heads": cfg.num_key_value_heads or heads,
                            "head_dim": getattr(cfg, "head_dim", None) or cfg.hidden_size // heads,
                            "vocab_size": cfg.vocab_size},
            "vision_config": {**vision, "out_hidden_size": cfg.hidden_size}}


def file_label(path: str) -> str:
    """A text-encoder file's name without folders and extension (what records call the critic)."""
    return re.sub(r"\.safetensors$", "", path.replace("\\", "/").rsplit("/", 1)[-1])
