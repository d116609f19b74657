"""Load RationalRewards Critic (ComfyUI native): one file in ``models/text_encoders/`` -> RR_CRITIC, run by
ComfyUI's own Qwen3-VL and memory manager (ComfyUI >= 0.25; refused with the version needed before).

A loader of its own, not an option on Load Critic: every input of Load Critic (precision, device,
attention kernel, decoding mode, bitsandbytes quantisation, images per pass, keep on GPU) is about the
transformers runtime and means nothing here, where ComfyUI decides all of it, and its files are single
text-encoder files like the ones Load CLIP lists, not checkpoint folders. An optional CLIP input takes a
Qwen3-VL from any loader (Load CLIP, GGUF loaders) instead of the file.
"""
from __future__ import annotations

import json
import logging
import os

import folder_paths
from comfy_api.latest import io

from ..models.critic.critic import Critic
from ..models.critic.prompting import check_templates, get_template
from ..models.critic.qwen_resize import QWEN3_VL_MAX_PIXELS, QWEN3_VL_MIN_PIXELS
from ..models.runtime.checkpoints import AUTO_MAX_PIXELS, RR_TRAINED_MAX_PIXELS, resolve_max_pixels
from ..models.toolkit.export import file_metadata
from .common import CATEGORY, CriticType, fail, naming, template_dirs, user_errors
from .native_backend import NATIVE_SINCE, ComfyQwen3VLBackend, file_label, native_support
from .residency import CriticHandle

NODE = "Load Critic, ComfyUI native"
FOLDER = "text_encoders"
log = logging.getLogger("RationalRewards")


def text_encoder_files() -> list[str]:
    return folder_paths.get_filename_list(FOLDER)


def pixels_for(max_pixels: int, name: str, meta: dict[str, str]) -> tuple[int | None, str]:
    """(max_pixels, why): -1 follows what the file says the checkpoint was trained on (else its name)."""
    if max_pixels < 0 and meta.get("trained_max_pixels"):
        return int(meta["trained_max_pixels"]), "the checkpoint's training size (recorded in the file)"
    return resolve_max_pixels(max_pixels, name)


def template_drift(meta: dict[str, str], dirs: list[str]) -> list[str]:
    """Templates that differ from the ones the file was exported with (said in the log, not an error:
    a user's own template is a choice)."""
    recorded = json.loads(meta.get("templates") or "{}")
    return [n for n, digest in recorded.items() if get_template(n, dirs).digest != digest]


class LoadNativeCritic(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="RR_LoadNativeCritic",
            **naming("Load Critic, ComfyUI native", "text encoder", "fp8", "Qwen3-VL", "reward model"),
            category=CATEGORY,
            description=f"Runs the critic with ComfyUI's own Qwen3-VL (ComfyUI {NATIVE_SINCE} or newer), from one "
                        "file in models/text_encoders/ (bf16 or fp8, made by 'rationalrewards export'). ComfyUI "
                        "loads, streams and unloads it like any model it manages, on NVIDIA, AMD and Apple. Every "
                        "critique, compare, rank, loop and localise node takes it.",
            inputs=[
                io.Combo.Input("text_encoder", display_name="critic file", options=text_encoder_files(),
                               tooltip="A RationalRewards file in models/text_encoders/: the fp8 file (~10.6 GB) "
                                       "for 12-16 GB cards, the bf16 file (~17.5 GB) for 24 GB and up. Any "
                                       "Qwen3-VL 8B/4B instruct file works too."),
                io.Int.Input("max_pixels", display_name="max image pixels (-1 = as trained)", default=AUTO_MAX_PIXELS,
                             min=AUTO_MAX_PIXELS, max=16_777_216, step=1,
                             tooltip=f"Images larger than this many pixels are scaled down first. -1 (default): "
                                     f"what the checkpoint was trained on ({RR_TRAINED_MAX_PIXELS:,} px for "
                                     f"RationalRewards). Then each image is snapped to multiples of 32 px as the "
                                     f"checkpoint's processor does."),
                io.Clip.Input("clip", display_name="use this CLIP instead", optional=True,
                              tooltip="Optional: a Qwen3-VL from any loader (Load CLIP, a GGUF loader) instead of "
                                      "the critic file"),
            ],
            outputs=[CriticType.Output(display_name="critic")],
        )

    @classmethod
    def execute(cls, text_encoder: str, max_pixels: int, clip=None) -> io.NodeOutput:
        reason = native_support()
        if reason:
            raise fail(NODE, reason)
        import comfy.sd

        meta: dict[str, str] = {}
        name = file_label(text_encoder)
        if clip is None:
            path = folder_paths.get_full_path(FOLDER, text_encoder)
            if path is None or not os.path.isfile(path):
                raise fail(NODE, f"no file {text_encoder!r} in models/{FOLDER}/; put the file made by "
                                 "'rationalrewards export' there and refresh")
            meta = file_metadata(path) if path.endswith(".safetensors") else {}
            clip = comfy.sd.load_clip(ckpt_paths=[path], embedding_directory=folder_paths.get_folder_paths("embeddings"),
                                      clip_type=comfy.sd.CLIPType.STABLE_DIFFUSION)
        else:
            name = "CLIP input"
        dirs = template_dirs()
        with user_errors(NODE):
            check_templates(dirs)
            try:
                backend = ComfyQwen3VLBackend(clip, meta.get("source") or name,
                                              int(meta.get("image_min_pixels") or QWEN3_VL_MIN_PIXELS),
                                              int(meta.get("image_max_pixels") or QWEN3_VL_MAX_PIXELS))
            except TypeError as e:
                raise fail(NODE, f"{e} ({name})") from None
            pixels, why = pixels_for(max_pixels, meta.get("source") or name, meta)
        drift = template_drift(meta, dirs)
        if drift:
            log.info("%s: templates %s differ from the ones %s was exported with (your own templates are used)",
                     NODE, ", ".join(drift), name)
        return io.NodeOutput(CriticHandle(Critic(backend=backend, max_pixels=pixels, max_pixels_source=why,
                                                 name=backend.model_name, template_dir=dirs)))
