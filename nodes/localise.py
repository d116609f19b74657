"""Defect localisation: critique -> defect phrases -> GroundingDINO boxes -> SAM masks, for inpainting."""
from __future__ import annotations

import json
import logging
import os
from contextlib import contextmanager
from typing import Iterator

import numpy as np
import torch

import comfy.model_management
import comfy.utils
import folder_paths
from comfy_api.latest import io

from ..models.backends.base import GenerationOptions
from ..models.errors import RationalRewardsError
from ..models.grounding.detect import as_bounding_boxes
from ..models.grounding.followup import ask_regions
from ..models.grounding.localise import MASK_MODES, GroundingModels, LocaliseOptions, localise_image, preview
from ..models.grounding.loader import (KNOWN_DETECTORS, KNOWN_SEGMENTERS, NO_SEGMENTER, list_local, load_grounding)
from ..models.grounding.masks import empty
from ..models.grounding.phrases import PHRASE_SOURCES, PhraseResult, pick_phrases, split_phrases
from ..models.grounding.segment import MULTIMASK
from ..models.runtime.checkpoints import model_choices
from ..models.judging.rubric import Task
from .common import (CATEGORY, check_critic, CriticType, CritiqueSet, CritiqueType, fail, generating, naming,
                     require_critiques, critic_images, to_pil_list, user_errors)

log = logging.getLogger("RationalRewards")
DETECTOR_FOLDER = "grounding-dino"
SEGMENTER_FOLDER = "sams"
GroundingType = io.Custom("RR_GROUNDING")
BoundingBox = getattr(io, "BoundingBox", None)    # core's BOUNDING_BOX type, where this ComfyUI has it


def box_outputs() -> list:
    """The boxes in core's bounding-box type (per image: x, y, width, height, score, label), where it exists."""
    return [] if BoundingBox is None else [BoundingBox.Output(display_name="boxes",
                                                              tooltip="The regions as bounding boxes, per image")]


def register_grounding_folders() -> None:
    """``models/grounding-dino`` and ``models/sams`` (the names other packs use, so their files show up)."""
    for name in (DETECTOR_FOLDER, SEGMENTER_FOLDER):
        if name not in folder_paths.folder_names_and_paths:
            folder_paths.add_model_folder_path(name, os.path.join(folder_paths.models_dir, name), is_default=True)


def grounding_dirs(name: str) -> list[str]:
    register_grounding_folders()
    return folder_paths.get_folder_paths(name)


@contextmanager
def grounding_device(models: GroundingModels) -> Iterator[torch.device]:
    """The residency seam: the one place that decides where the grounding models run.

    For now the models live on the CPU and visit ComfyUI's device for one node call, after asking the
    memory manager for room; a ModelPatcher adapter (like the critic's, nodes/residency.py) can replace
    this function without touching the nodes or the core."""
    device = torch.device("cpu") if models.device == "cpu" else comfy.model_management.get_torch_device()
    if device.type != "cpu":
        comfy.model_management.free_memory(int(models.size_bytes() * 1.5) + (512 << 20), device)
    with models.placed(device, offload="cpu"):
        yield device


# --- loader ---------------------------------------------------------------------------------------------

class LoadGrounding(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="RR_LoadGrounding",
            **naming("Load Grounding Models", "GroundingDINO", "SAM", "segment anything", "detector",
                     "inpaint mask models"),
            category=CATEGORY + "/localise",
            description="GroundingDINO (finds boxes for phrases) and SAM / SAM 2 (turns boxes into masks), from "
                        "models/grounding-dino and models/sams. Hugging Face folders, Hub ids (downloaded only "
                        "when allowed) and the original groundingdino_swin*.pth / sam_vit_*.pth files all work.",
            inputs=[
                io.Combo.Input("detector", options=model_choices(list_local(grounding_dirs(DETECTOR_FOLDER), "detector"),
                                                            KNOWN_DETECTORS),
                               tooltip="A GroundingDINO folder or .pth in models/grounding-dino, or a Hub id. An "
                                       "original .pth needs bert-base-uncased's vocab.txt in "
                                       "models/grounding-dino/bert-base-uncased/ (or the Hugging Face cache)."),
                io.Combo.Input("segmenter", options=[NO_SEGMENTER] + model_choices(
                    list_local(grounding_dirs(SEGMENTER_FOLDER), "segmenter"), KNOWN_SEGMENTERS),
                               default=NO_SEGMENTER,
                               tooltip="A SAM / SAM 2 folder, a Meta sam_vit_*.pth (needs the segment-anything "
                                       "package) or a Hub id; 'none' makes each box a rectangular mask."),
                io.Boolean.Input("allow_download", display_name="download if missing", default=False,
                                 tooltip="Fetch a missing Hub model (safetensors and configs only) or the BERT "
                                         "tokenizer. Off: work offline and report what is missing."),
                io.Combo.Input("device", options=["auto", "cpu"], default="auto",
                               tooltip="auto: ComfyUI's device while localising (the models wait on the CPU "
                                       "otherwise). cpu: always on the CPU."),
            ],
            outputs=[GroundingType.Output(display_name="grounding")],
        )

    @classmethod
    def execute(cls, detector: str, segmenter: str, allow_download: bool, device: str) -> io.NodeOutput:
        node = "Load Grounding Models"
        bar = comfy.utils.ProgressBar(100)
        try:
            models = load_grounding(
                detector, segmenter, grounding_dirs(DETECTOR_FOLDER), grounding_dirs(SEGMENTER_FOLDER),
                tokenizer_dirs=grounding_dirs(DETECTOR_FOLDER) + [folder_paths.models_dir],
                allow_download=allow_download,
                progress=lambda done, total: bar.update_absolute(int(100 * done / max(total, 1))))
        except RationalRewardsError as e:
            raise fail(node, str(e)) from None
        models.device = device
        return io.NodeOutput(models)


# --- defect phrases -------------------------------------------------------------------------------------

class DefectPhrases(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="RR_DefectPhrases",
            **naming("Defect Phrases", "flaws", "artifacts", "what to fix", "inpaint",
                     shown=("what to inpaint",)),
            category=CATEGORY + "/localise",
            description="Turns a critique into short phrases naming the flawed regions ('left hand', 'sign text') "
                        "for Localise Defects. ask_critic asks the same critic one follow-up question (image + "
                        "critique in, 'REGION: phrase | dimension | severity' lines out) and falls back to the "
                        "justifications when the answer is unreadable.",
            inputs=[
                CritiqueType.Input("critique_data", display_name="critique",
                                   tooltip="critique_data from a Critique Image / Critique Edit node"),
                io.Combo.Input("source", display_name="phrases from", options=list(PHRASE_SOURCES), default="ask_critic",
                               tooltip="ask_critic: one short follow-up generation (needs the critic input). "
                                       "justifications: phrases picked from the critique text, no model call. "
                                       "typed: only the phrases typed below."),
                io.String.Input("typed_phrases", display_name="your phrases", multiline=True, default="",
                                tooltip="Your own phrases, one per line; added to the others (or used alone with "
                                        "source 'typed')."),
                io.Int.Input("max_regions", display_name="max regions", default=4, min=1, max=16,
                             tooltip="At most this many phrases from the critique, most severe first"),
                io.Float.Input("score_below", display_name="fix scores below", default=3.5, min=1.0, max=4.01, step=0.25,
                               tooltip="Only dimensions scoring below this count as defects (4 = no problem). "
                                       "When every score is at or above it, no phrase is produced."),
                io.Int.Input("index", display_name="image in batch", default=0, min=0, max=4095,
                             tooltip="Which critique of a batch to use (0 = the first image)"),
                CriticType.Input("critic", optional=True,
                                 tooltip="The critic that wrote the critique; needed when 'phrases from' is ask_critic"),
                io.Int.Input("max_new_tokens", display_name="max answer length (tokens)", default=256, min=16,
                             max=2048, step=16, tooltip="The longest follow-up answer the critic may write, in tokens"),
                io.Float.Input("temperature", display_name="randomness (temperature)", default=0.0, min=0.0, max=2.0,
                               step=0.05,
                               tooltip="How freely the critic picks its words in the follow-up: 0 (default) always "
                                       "gives the same answer, best for its strict format"),
                io.Int.Input("seed", display_name="critique seed", default=0, min=0, max=0xFFFFFFFF,
                             control_after_generate=False,
                             tooltip="Seed of the follow-up's sampling, not of your generator (its own random "
                                     "generator, never ComfyUI's)"),
            ],
            outputs=[
                io.String.Output(display_name="phrases", tooltip="One phrase per line: connect to Localise Defects"),
                io.String.Output(display_name="report", tooltip="Each phrase with its dimension, severity and "
                                                                "source, and notes on fallbacks"),
                io.String.Output(display_name="phrases_json"),
            ],
        )

    @classmethod
    def execute(cls, critique_data, source: str, typed_phrases: str, max_regions: int, score_below: float,
                index: int, max_new_tokens: int, temperature: float, seed: int, critic=None) -> io.NodeOutput:
        node = "Defect Phrases"
        require_critiques(critique_data, node)
        if index >= len(critique_data):
            raise fail(node, f"'image in batch' {index} is out of range: the critique batch has {len(critique_data)} item(s)")
        if source not in PHRASE_SOURCES:
            raise fail(node, f"'phrases from' must be one of {PHRASE_SOURCES}")
        options = GenerationOptions(max_new_tokens=max_new_tokens, temperature=temperature, seed=seed)
        pick = pick_phrases(critique_data.critiques[index], critique_data.prompts[index], source, typed_phrases,
                            max_regions=max_regions, score_below=score_below,
                            ask=lambda notes: cls._ask(node, critic, critique_data, index, max_regions, options, notes))
        text = "\n".join(p.text for p in pick.phrases)
        data = {"phrases": [p.to_dict() for p in pick.phrases], "notes": pick.notes, "source": source, "index": index}
        return io.NodeOutput(text, pick.report(), json.dumps(data, indent=2))

    @staticmethod
    def _ask(node: str, critic, data: CritiqueSet, index: int, max_regions: int, options: GenerationOptions,
             notes: list[str]) -> PhraseResult | None:
        if critic is None:
            raise fail(node, "'phrases from' ask_critic needs the critic input: connect the critic that wrote the "
                             "critique, or set 'phrases from' to justifications")
        handle = check_critic(critic, node)
        if data.images is None:
            notes.append("critique_data carries no image to show the critic; phrases come from the justifications")
            return None
        with user_errors(node):
            image = critic_images(data.images, node)[min(index, int(data.images.shape[0]) - 1)]
            source = None
            if data.critiques[index].task is Task.EDIT and data.sources is not None:
                sources = critic_images(data.sources, node, "source")
                source = sources[min(index, len(sources) - 1)]
            with generating(handle, options, 1, data.images, data.sources, node=node) as hooks:
                result = ask_regions(handle.critic, data.critiques[index], data.prompts[index], image, source,
                                     max_regions=max_regions, options=options, progress=hooks["progress"],
                                     should_stop=hooks["should_stop"])
        return result


# --- localise -------------------------------------------------------------------------------------------

class LocaliseDefects(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="RR_LocaliseDefects",
            **naming("Localise Defects", "inpaint", "mask flaws", "segment", "detect", "fix hands",
                     shown=("inpaint mask",)),
            category=CATEGORY + "/localise",
            description="Finds each phrase in the image with GroundingDINO and segments the boxes with SAM: an "
                        "inpainting MASK, the boxes as JSON, and a preview. Nothing found gives an all-zero mask "
                        "of the image's size, and the report says so.",
            inputs=[
                GroundingType.Input("grounding", tooltip="From Load Grounding Models"),
                io.Image.Input("image", tooltip="The image (or batch) to search; RGBA and greyscale are converted"),
                io.String.Input("phrases", multiline=True, default="",
                                tooltip="What to find, one phrase per line (',' ';' and '.' also separate): connect "
                                        "Defect Phrases, or type e.g. 'left hand'"),
                io.Float.Input("box_threshold", display_name="box confidence", default=0.3, min=0.0, max=1.0, step=0.01,
                               tooltip="Keep a box when its best-matching word beats this probability"),
                io.Float.Input("text_threshold", display_name="phrase match", default=0.25, min=0.0, max=1.0, step=0.01,
                               tooltip="...and its phrase's words average at least this"),
                io.Int.Input("max_regions", display_name="max regions", default=4, min=1, max=64,
                             tooltip="At most this many boxes per image, best first"),
                io.Combo.Input("mask_mode", display_name="masks", options=list(MASK_MODES), default="union",
                               tooltip="union: one mask per image. per_phrase: one mask per phrase, image-major "
                                       "(images x phrases masks; an image batch of empty masks when no phrase)"),
                io.Int.Input("grow", default=8, min=-256, max=256,
                             tooltip="Dilate the mask by this many pixels (negative shrinks) so inpainting covers "
                                     "the region's edges"),
                io.Int.Input("feather", default=4, min=0, max=256,
                             tooltip="Soften the mask edge over about this many pixels"),
                io.Combo.Input("multimask", display_name="SAM mask choice", options=list(MULTIMASK), default="best",
                               tooltip="SAM proposes up to three masks per box; which one to use: single (SAM's one mask), best (highest predicted "
                                       "IoU of three), largest, smallest"),
                io.Int.Input("resolution", display_name="detector resolution (0 = model's)", default=0, min=0, max=2048, step=32,
                             tooltip="Detector input size (shortest edge). 0 keeps the checkpoint's own (800 for "
                                     "GroundingDINO); lower is faster, higher finds small things"),
            ],
            outputs=[
                io.Mask.Output(display_name="mask"),
                io.Image.Output(display_name="preview", tooltip="Masks tinted per phrase, boxes and scores drawn"),
                io.String.Output(display_name="boxes_json", tooltip="Per image: phrases, boxes [x0,y0,x1,y1] in "
                                                                     "pixels, scores, what was not found"),
                io.String.Output(display_name="report"),
                io.Int.Output(display_name="regions", tooltip="How many regions were found in the whole batch"),
            ] + box_outputs(),
        )

    @classmethod
    def execute(cls, grounding, image, phrases: str, box_threshold: float, text_threshold: float, max_regions: int,
                mask_mode: str, grow: int, feather: int, multimask: str, resolution: int) -> io.NodeOutput:
        node = "Localise Defects"
        if not isinstance(grounding, GroundingModels):
            raise fail(node, "the grounding input is not from Load Grounding Models; connect its grounding output")
        if mask_mode not in MASK_MODES:
            raise fail(node, f"'masks' must be one of {MASK_MODES}")
        try:
            options = LocaliseOptions(box_threshold, text_threshold, max_regions, multimask, grow, feather,
                                      resolution or None)
        except ValueError as e:
            raise fail(node, str(e)) from None
        pils = to_pil_list(image, node)
        texts = [p.text for p in split_phrases(phrases)]
        h, w = pils[0].height, pils[0].width
        bar = comfy.utils.ProgressBar(len(pils))
        results = []
        with grounding_device(grounding) as device:
            for i, pil in enumerate(pils):
                comfy.model_management.throw_exception_if_processing_interrupted()
                results.append(localise_image(grounding, pil, texts, options, device=device))
                bar.update_absolute(i + 1)
        if mask_mode == "per_phrase" and texts:
            mask = torch.cat([r.phrase_masks for r in results], 0)
        else:
            mask = torch.stack([r.union for r in results], 0) if results else empty(h, w)
        previews = torch.from_numpy(np.stack([np.asarray(preview(p, r), dtype=np.float32) / 255.0
                                              for p, r in zip(pils, results)]))
        regions = sum(len(r.detections) for r in results)
        lines = []
        if not texts:
            lines.append("no phrases given: the mask is empty")
        for i, r in enumerate(results):
            found = ", ".join(f"{d.phrase} ({d.score:.2f})" for d in r.detections) or "nothing"
            lines.append(f"image {i}: found {found}" + "".join(f"\n  {w_}" for w_ in r.warnings))
        if texts and regions == 0:
            lines.insert(0, "NOTHING FOUND: the mask is all zero (lower 'box confidence', or rephrase)")
            log.warning("Localise Defects: nothing found for %s", texts)
        boxes = json.dumps([dict(r.to_dict(), image=i) for i, r in enumerate(results)], indent=2)
        core_boxes = [] if BoundingBox is None else [[as_bounding_boxes(r.detections) for r in results]]
        return io.NodeOutput(mask.float().contiguous(), previews, boxes, "\n".join(lines), regions, *core_boxes)
