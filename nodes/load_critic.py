"""Load critic: a checkpoint folder or Hugging Face id → RR_CRITIC."""
from __future__ import annotations

import logging
import time

import comfy.model_management as mm
import comfy.utils
import torch
from comfy_api.latest import io

from ..models.backends.options import DECODING, DTYPES, available_attention, pick_dtype, resolve_decoding
from ..models.runtime.checkpoints import AUTO_MAX_PIXELS, KNOWN_CRITICS, RR_TRAINED_MAX_PIXELS, list_local, model_choices
from ..models.runtime.factory import CheckpointSpec, build_critic
from ..models.runtime.memory_plan import QUANTIZATIONS
from ..models.critic.script import AnswerScript
from . import residency
from .common import (CATEGORY, CRITIC_TOOLTIP, CriticType, check_critic, fail, model_dirs, naming, status,
                     template_dirs, user_errors)

NODE = "Load Critic"
MAX_PIXELS_DEFAULT = AUTO_MAX_PIXELS   # -1: what the checkpoint was trained on
log = logging.getLogger("RationalRewards")


def memory_budget(device: torch.device) -> int:
    """Bytes a critique can have on ``device``: free memory plus what ComfyUI's memory manager would evict
    for it (the models it has loaded there). On the CPU evicting frees nothing, so free RAM only."""
    free = int(mm.get_free_memory(device))
    if device.type == "cpu":
        return free
    evictable = 0
    for loaded in mm.current_loaded_models:
        if loaded.model is not None and str(loaded.device) == str(device):
            evictable += int(loaded.model_loaded_memory())
    return free + evictable


def checkpoint_options() -> list[str]:
    return model_choices(list_local(model_dirs()), KNOWN_CRITICS)


class LoadCritic(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="RR_LoadCritic",
            **naming("Load Critic", "reward model", "judge model", "aesthetic quality model", "VLM critic",
                     "Qwen3-VL"),
            category=CATEGORY,
            description="Loads a RationalRewards (or any Qwen3-VL / Qwen2.5-VL instruct) checkpoint as a critic. "
                        "Folders come from models/rationalrewards/; nothing is downloaded unless allowed. "
                        f"Defaults: max image pixels {MAX_PIXELS_DEFAULT} (as the checkpoint was trained), decoding auto "
                        "(compiled on a CUDA GPU: the first critique compiles for a minute or more).",
            inputs=[
                io.Combo.Input("checkpoint", display_name="critic model", options=checkpoint_options(),
                               tooltip="RationalRewards-8B-T2I judges text-to-image results, RationalRewards-8B-Edit "
                                       "judges edits. A folder in models/rationalrewards/, or a Hugging Face id that "
                                       "is downloaded into that folder when 'download if missing' is on."),
                io.String.Input("custom_id", display_name="other model (id or folder)", default="", optional=True,
                                tooltip="Optional: another Hugging Face id or an absolute folder path; used instead "
                                        "of 'critic model' when not empty."),
                io.Boolean.Input("allow_download", display_name="download if missing", default=False,
                                 tooltip="Fetch a missing model from Hugging Face (about 17.5 GB for an 8B critic; "
                                         "safetensors and configs only). Off (default): work offline and say what "
                                         "to download."),
                io.Combo.Input("dtype", display_name="precision", options=["auto", "bf16", "fp16", "fp32"],
                               default="auto",
                               tooltip="Number format of the weights. auto (default): bf16 on GPUs that support it, "
                                       "fp16 on other GPUs, fp32 on the CPU. bf16/fp16 need about 17.5 GB for the 8B "
                                       "critic, fp32 twice that."),
                io.Combo.Input("device", display_name="run on", options=["auto", "cuda", "cpu"], default="auto",
                               tooltip="auto (default): ComfyUI's GPU when there is one, else the CPU (very slow for "
                                       "an 8B critic)."),
                io.Combo.Input("attention", display_name="attention kernel", options=available_attention(),
                               default="sdpa",
                               tooltip="sdpa (default) works everywhere. flash_attention_2 is listed only when the "
                                       "flash-attn package is installed; eager is the slow reference."),
                io.Int.Input("max_pixels", display_name="max image pixels (-1 = as trained)",
                             default=AUTO_MAX_PIXELS, min=AUTO_MAX_PIXELS, max=16_777_216, step=1,
                             tooltip=f"Images larger than this many pixels (width x height) are scaled down before "
                                     f"the critic sees them. -1 (default): what the checkpoint was trained on "
                                     f"({RR_TRAINED_MAX_PIXELS:,} px for RationalRewards checkpoints, the processor's "
                                     f"own limit for other models). 0: the checkpoint's image processor decides."),
                io.Int.Input("batch_size", display_name="images per critic pass", default=4, min=1, max=64,
                             tooltip="How many images the critic reads in one pass (default 4). Not your latent "
                                     "batch size: a batch of any size is critiqued, this many at a time. Higher is "
                                     "faster on a big GPU and needs more VRAM."),
                io.Boolean.Input("keep_loaded", display_name="keep critic on GPU", default=False, optional=True,
                                 tooltip="Off (default): the critic's VRAM goes back to ComfyUI after each critique "
                                         "node (it reloads from pinned RAM in well under a second). On: it stays on "
                                         "the GPU between critiques; ComfyUI still evicts it if a generator needs "
                                         "the memory."),
                io.Combo.Input("decoding", display_name="decoding speed mode", options=list(DECODING),
                               default="auto", optional=True,
                               tooltip="auto (default): compiled on a CUDA GPU with Triton, plain elsewhere. "
                                       "compiled is several times faster per token, but the first critique of a "
                                       "session (and each new batch size) compiles for a minute or more first; the "
                                       "node shows a status while it does. plain starts at once: pick it when you "
                                       "critique only a few images. static: a static cache without compiling. "
                                       "Greedy answers are identical in every mode."),
                io.Combo.Input("quantization", display_name="quantize weights", options=list(QUANTIZATIONS),
                               default="none", optional=True,
                               tooltip="none (default): weights as stored. Shrink the critic's weights while loading (needs the bitsandbytes package): "
                                       "int8 ~9 GiB and 4bit (NF4) ~6 GiB of weights for the 8B critic instead of "
                                       "16 GiB in bf16 (about 10.7 / 7.3 / 17.7 GiB while it critiques), so it runs "
                                       "on a 12-16 GB card; the README's memory plan says which fits beside which "
                                       "generator. A folder that is already quantised (bnb, AWQ, GPTQ, FP8) loads "
                                       "as it is."),
            ],
            outputs=[CriticType.Output(display_name="critic")],
        )

    @classmethod
    def execute(cls, checkpoint: str, allow_download: bool, dtype: str, device: str, attention: str,
                max_pixels: int, batch_size: int, keep_loaded: bool = False, decoding: str = "auto",
                custom_id: str = "", quantization: str = "none") -> io.NodeOutput:
        name = (custom_id or "").strip() or checkpoint
        bar = comfy.utils.ProgressBar(100)
        try:
            target = residency.compute_device(device)
        except RuntimeError as e:
            raise fail(NODE, str(e)) from None
        # Weights load into RAM (the offload device) in the dtype of the compute device; ComfyUI's memory
        # manager moves them when a critique runs (nodes/residency.py).
        dtype = next(k for k, v in DTYPES.items() if v == pick_dtype(dtype, target))
        started = time.monotonic()
        status(NODE, f"loading {name} into RAM ({dtype}); an 8B critic reads about 17.5 GB, which takes a while "
                     "the first time")
        downloading = []

        def progress(done: int, total: int) -> None:
            if not downloading:
                downloading.append(True)
                status(NODE, f"downloading {name} from Hugging Face into models/rationalrewards/")
            bar.update_absolute(int(100 * done / max(total, 1)))

        spec = CheckpointSpec(name, tuple(model_dirs()), allow_download, dtype=dtype,
                              device=residency.offload_device(target).type, attention=attention,
                              batch_size=batch_size, decoding=decoding, quantization=quantization,
                              max_pixels=max_pixels, template_dirs=tuple(template_dirs()))
        with user_errors(NODE):   # not found, does not fit (the plan says what would), missing package, bad template
            critic = build_critic(spec, progress=progress, budget=lambda: memory_budget(target), where=str(target))
        log.info("RationalRewards critic %s loaded, quantization: %s", critic.name, critic.backend.quantization)
        handle = residency.CriticHandle(critic, residency.attach(critic.backend.model, target,
                                                                 keep_loaded=keep_loaded))
        bar.update_absolute(100)
        mode = resolve_decoding(critic.backend.decoding, target)   # on the device it will critique on
        status(NODE, f"loaded in {time.monotonic() - started:.1f} s; critiques run on {target.type}, decoding "
                     f"{mode}" + (" (the first critique compiles first: a minute or more)" if mode == "compiled"
                                  else ""))
        return io.NodeOutput(handle)


class ReplayAnswers(io.ComfyNode):
    """Scripted answers: replay a saved critique text through the critic's real decoding path."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="RR_ReplayAnswers",
            **naming("Replay Critique Answers", "replay critique", "debug critic", "test workflow",
                     shown=()),
            category=CATEGORY + "/debug",
            description="Makes the critic write the given answer text (forced through its own decoding and "
                        "parsed like any answer). Paste a saved critique to reproduce its card, or test a workflow "
                        "without waiting for the model.",
            inputs=[
                CriticType.Input("critic", tooltip=CRITIC_TOOLTIP),
                io.String.Input("script", display_name="answer (critique text or JSON rules)", multiline=True,
                                default="",
                                tooltip="Paste a critique as the critic wrote it: it becomes the answer to every "
                                        "prompt. For different answers per prompt, write JSON rules instead: "
                                        '[{"answer": "...", "when_request_contains": "...", "task": "t2i" or "edit", '
                                        '"mode": "pointwise" (one image) or "pairwise" (A/B)}] (t2i: text-to-image). '
                                        "The most specific matching rule wins; prompts that match none are critiqued "
                                        "freely. Empty: the critic answers freely."),
            ],
            outputs=[CriticType.Output(display_name="critic")],
        )

    @classmethod
    def execute(cls, critic, script: str) -> io.NodeOutput:
        node = "Replay Critique Answers"
        handle = check_critic(critic, node)
        try:
            parsed = AnswerScript.from_text(script)
        except ValueError as e:
            raise fail(node, str(e)) from None
        return io.NodeOutput(handle.with_script(parsed))
