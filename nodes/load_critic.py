"""Load critic: a checkpoint folder or Hugging Face id → RR_CRITIC."""
from __future__ import annotations

import logging

import comfy.model_management as mm
import comfy.utils
import torch
from comfy_api.latest import io

from ..models.backends.options import DECODING, DTYPES, available_attention, pick_dtype
from ..models.compat import DependencyError
from ..models.loader import KNOWN_CRITICS, list_local, load_critic, plan_critic, resolve_checkpoint
from ..models.memory_plan import QUANTIZATIONS, MemoryPlanError, check, gib
from ..models.script import AnswerScript
from . import residency
from .common import CATEGORY, CriticType, check_critic, fail, model_dirs, user_errors

NODE = "RR Load Critic"
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
    local = list_local(model_dirs())
    known = [k for k in KNOWN_CRITICS if k.split("/")[-1] not in local]
    return local + known


class LoadCritic(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="RR_LoadCritic",
            display_name="Load RationalRewards Critic",
            category=CATEGORY,
            description="Loads a RationalRewards (or any Qwen3-VL / Qwen2.5-VL instruct) checkpoint as a critic. "
                        "Folders come from models/rationalrewards/; nothing is downloaded unless allowed.",
            inputs=[
                io.Combo.Input("checkpoint", options=checkpoint_options(),
                               tooltip="A folder in models/rationalrewards/, or a Hugging Face id that is "
                                       "fetched into that folder when 'allow_download' is on."),
                io.String.Input("custom_id", default="", optional=True,
                                tooltip="Optional: another Hugging Face id or an absolute folder path; "
                                        "overrides 'checkpoint' when not empty."),
                io.Boolean.Input("allow_download", default=False,
                                 tooltip="Fetch a missing checkpoint from Hugging Face (safetensors and configs "
                                         "only). Off: work offline and report what is missing."),
                io.Combo.Input("dtype", options=["auto", "bf16", "fp16", "fp32"], default="auto",
                               tooltip="auto: bf16 on GPUs that support it, fp16 on other GPUs, fp32 on CPU."),
                io.Combo.Input("device", options=["auto", "cuda", "cpu"], default="auto",
                               tooltip="auto: ComfyUI's GPU when there is one, else the CPU."),
                io.Combo.Input("attention", options=available_attention(), default="sdpa",
                               tooltip="flash_attention_2 is listed only when the flash-attn package is installed."),
                io.Int.Input("max_pixels", default=0, min=0, max=16_777_216, step=1024,
                             tooltip="Downscale images above this pixel count before the critic sees them. "
                                     "0 keeps the checkpoint processor's own limit."),
                io.Int.Input("batch_size", default=4, min=1, max=64,
                             tooltip="How many images one generation call critiques at once."),
                io.Boolean.Input("keep_loaded", default=False, optional=True,
                                 tooltip="Off: the critic's VRAM goes back to ComfyUI after each critique node "
                                         "(it reloads from pinned RAM in well under a second). On: it stays on the "
                                         "GPU between critiques; ComfyUI still evicts it if a generator needs the "
                                         "memory."),
                io.Combo.Input("decoding", options=list(DECODING), default="auto", optional=True,
                               tooltip="auto: compiled decoding (static KV cache + torch.compile) on a CUDA GPU "
                                       "with Triton, plain elsewhere. compiled is several times faster per token "
                                       "but its first critique (and each new batch size) compiles for a minute or "
                                       "more; plain starts at once. Greedy answers are identical in every mode."),
                io.Combo.Input("quantization", options=list(QUANTIZATIONS), default="none", optional=True,
                               tooltip="Shrink the critic's weights while loading (needs the bitsandbytes package): "
                                       "int8 ~9 GiB and 4bit (NF4) ~6 GiB for the 8B critic instead of 16 GiB in "
                                       "bf16, so it fits a 12-16 GB card beside the generator. none: as stored. A "
                                       "folder that is already quantised (bnb, AWQ, GPTQ, FP8) loads as it is."),
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
        with user_errors(NODE):
            path = resolve_checkpoint(name, model_dirs(), allow_download=allow_download,
                                      progress=lambda done, total: bar.update_absolute(int(100 * done / max(total, 1))))
        try:
            shape, plan = plan_critic(path, quantization=quantization, dtype=dtype, batch_size=batch_size,
                                      max_pixels=max_pixels or None, attention=attention)
        except (KeyError, TypeError, ValueError, OSError) as e:   # an architecture the plan has no shape for
            log.warning("RationalRewards: no memory plan for %s (%s: %s); loading without one", path.name,
                        type(e).__name__, e)
        else:   # fail before loading when the critique cannot fit (what fits is in the message)
            budget = memory_budget(target)
            log.info("RationalRewards memory plan (%s on %s): %s; %s available (free + evictable)%s", path.name,
                     target, plan.describe(), gib(budget), "".join(f"; {n}" for n in plan.notes))
            try:
                check(shape, plan, budget, str(target), attention)
            except MemoryPlanError as e:
                raise fail(NODE, str(e)) from None
        with user_errors(NODE):
            try:
                critic = load_critic(name, model_dirs(), path=path, dtype=dtype,
                                     device=residency.offload_device(target).type,
                                     attention=attention, max_pixels=max_pixels or None, batch_size=batch_size,
                                     decoding=decoding, quantization=quantization)
            except DependencyError as e:
                raise fail(NODE, str(e)) from None
        log.info("RationalRewards critic %s loaded, quantization: %s", path.name, critic.backend.quantization)
        return io.NodeOutput(residency.CriticHandle(critic, residency.attach(critic.backend.model, target,
                                                                             keep_loaded=keep_loaded)))


class ReplayAnswers(io.ComfyNode):
    """Scripted answers: replay a saved critique text through the critic's real decoding path."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="RR_ReplayAnswers",
            display_name="Replay Critique Answers (RationalRewards)",
            category=CATEGORY + "/debug",
            description="Makes the critic write the given answer text for matching prompts (forced through its "
                        "own decoding and parsed like any answer). Use it to reproduce a saved critique or to "
                        "test a workflow without waiting for the model.",
            inputs=[
                CriticType.Input("critic"),
                io.String.Input("script", multiline=True, default="[]",
                                tooltip='JSON list of {"answer": "...", "when_request_contains": "...", '
                                        '"task": "t2i"|"edit", "mode": "pointwise"|"pairwise"}. The most specific '
                                        "matching rule wins; prompts that match none are critiqued freely."),
            ],
            outputs=[CriticType.Output(display_name="critic")],
        )

    @classmethod
    def execute(cls, critic, script: str) -> io.NodeOutput:
        node = "RR Replay Answers"
        handle = check_critic(critic, node)
        try:
            parsed = AnswerScript.from_json(script)
        except ValueError as e:
            raise fail(node, str(e)) from None
        return io.NodeOutput(handle.with_script(parsed))
