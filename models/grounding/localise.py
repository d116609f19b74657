"""Phrases + image -> boxes -> masks: the whole localisation of one image, and where the models run.

``GroundingModels.placed(device)`` is the single place that moves the detector and segmenter: onto
the execution device for the duration of a call, back to the offload device afterwards (the
residency seam a memory-manager adapter replaces).
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np
import torch
from PIL import Image

from ..critic.images import flatten_rgb
from . import masks as M
from .detect import Detection, GroundingDetector
from .segment import MULTIMASK, BoxSegmenter, Segmenter

MASK_MODES = ("union", "per_phrase")


@dataclass(frozen=True)
class LocaliseOptions:
    box_threshold: float = 0.3
    text_threshold: float = 0.25
    max_regions: int = 4            # per image, best-scoring first
    multimask: str = "best"
    grow: int = 8                   # pixels; negative shrinks
    feather: int = 4                # pixels of Gaussian softening
    resolution: int | None = None   # detector's shortest edge; None keeps the checkpoint's setting

    def __post_init__(self) -> None:
        if self.multimask not in MULTIMASK:
            raise ValueError(f"multimask must be one of {MULTIMASK}; got {self.multimask!r}")
        if not (0.0 <= self.box_threshold <= 1.0 and 0.0 <= self.text_threshold <= 1.0):
            raise ValueError("thresholds must be in [0, 1]")


@dataclass
class ImageLocalisation:
    phrases: list[str]
    detections: list[Detection]
    region_masks: np.ndarray          # [N, H, W] bool: one per detection, before grow/feather
    phrase_masks: torch.Tensor        # [P, H, W] float in [0, 1], grown and feathered; zeros when not found
    union: torch.Tensor               # [H, W] float in [0, 1], grown and feathered
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"phrases": self.phrases, "detections": [d.to_dict() for d in self.detections],
                "found": sorted({d.phrase for d in self.detections}),
                "not_found": [p for p in self.phrases if p not in {d.phrase for d in self.detections}],
                "mask_area": round(float(self.union.mean()), 6), "warnings": self.warnings}


@dataclass
class GroundingModels:
    """What flows from the loader to the localiser: a detector and a segmenter (or box masks)."""
    detector: GroundingDetector
    segmenter: Segmenter = field(default_factory=BoxSegmenter)
    device: str = "auto"            # "auto": the host's compute device while in use; "cpu": always the CPU

    @property
    def modules(self) -> list[torch.nn.Module]:
        return list(self.detector.modules) + list(self.segmenter.modules)

    def size_bytes(self) -> int:
        return sum(p.numel() * p.element_size() for m in self.modules for p in m.parameters())

    @contextmanager
    def placed(self, device: torch.device | str, offload: torch.device | str = "cpu") -> Iterator[torch.device]:
        """Models on ``device`` inside the block, back on ``offload`` after it (even on errors)."""
        device = torch.device(device)
        try:
            for m in self.modules:
                m.to(device)
            yield device
        finally:
            for m in self.modules:
                m.to(offload)


def localise_image(models: GroundingModels, image: Image.Image, phrases: Sequence[str],
                   options: LocaliseOptions = LocaliseOptions(), device: torch.device | str | None = None
                   ) -> ImageLocalisation:
    """Detect ``phrases`` in ``image``, segment each box, and build per-phrase and union masks."""
    image = flatten_rgb(image)
    w, h = image.size
    phrases = list(dict.fromkeys(p for p in phrases if p))
    result = models.detector.detect(image, phrases, options.box_threshold, options.text_threshold,
                                    options.max_regions, options.resolution, device=device)
    dets = result.detections
    regions = models.segmenter.segment(image, [d.box for d in dets], options.multimask, device=device) if dets \
        else np.zeros((0, h, w), dtype=bool)
    raw = torch.zeros((max(len(phrases), 1), h, w), dtype=torch.float32)
    for det, region in zip(dets, regions):
        raw[det.phrase_index] = torch.maximum(raw[det.phrase_index], torch.from_numpy(region).float())
    phrase_masks = M.refine(raw[:len(phrases)], options.grow, options.feather) if phrases else M.empty(h, w)[:0]
    union = M.refine(raw.amax(0), options.grow, options.feather)
    warnings = list(result.warnings)
    if phrases and not dets:
        warnings.append(f"nothing found for {', '.join(repr(p) for p in phrases)} (box threshold "
                        f"{options.box_threshold:g}, text threshold {options.text_threshold:g}); the mask is empty")
    return ImageLocalisation(phrases, dets, regions, phrase_masks, union, warnings)


def preview(image: Image.Image, loc: ImageLocalisation) -> Image.Image:
    return M.draw_preview(flatten_rgb(image), loc.detections, loc.region_masks, len(loc.phrases))
