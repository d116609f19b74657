"""Load critic: a checkpoint folder or Hugging Face id → RR_CRITIC."""
from __future__ import annotations

import comfy.utils
from comfy_api.latest import io

from ..models.backends.transformers_backend import DECODING, DTYPES, available_attention, pick_dtype
from ..models.loader import AUTO_MAX_PIXELS, KNOWN_CRITICS, RR_TRAINED_MAX_PIXELS, list_local, load_critic, model_choices
from ..models.script import AnswerScript
from . import residency
from .common import CATEGORY, CriticType, check_critic, fail, model_dirs, template_dirs, user_errors

NODE = "RR Load Critic"


def checkpoint_options() -> list[str]:
    return model_choices(list_local(model_dirs()), KNOWN_CRITICS)


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
                io.Int.Input("max_pixels", default=AUTO_MAX_PIXELS, min=AUTO_MAX_PIXELS, max=16_777_216, step=1,
                             tooltip=f"Downscale images above this pixel count before the critic sees them. "
                                     f"-1: what the checkpoint was trained on ({RR_TRAINED_MAX_PIXELS:,} px for "
                                     f"RationalRewards checkpoints, the processor's own limit for other models). "
                                     f"0: the processor decides. Larger images than the training size cost "
                                     f"time and memory and were never seen in training."),
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
            ],
            outputs=[CriticType.Output(display_name="critic")],
        )

    @classmethod
    def execute(cls, checkpoint: str, allow_download: bool, dtype: str, device: str, attention: str,
                max_pixels: int, batch_size: int, keep_loaded: bool = False, decoding: str = "auto",
                custom_id: str = "") -> io.NodeOutput:
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
            critic = load_critic(name, model_dirs(), allow_download=allow_download, dtype=dtype,
                                 device=residency.offload_device(target).type,
                                 attention=attention, max_pixels=max_pixels, batch_size=batch_size,
                                 decoding=decoding, template_dirs=template_dirs(),
                                 progress=lambda done, total: bar.update_absolute(int(100 * done / max(total, 1))))
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
