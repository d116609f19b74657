"""Open-vocabulary boxes for defect phrases with transformers' GroundingDINO.

Each box is labelled with one of the given phrases (never a fragment of the caption): the caption is
``"p1 . p2 ."``, each phrase owns the tokens inside its span, and a box takes the phrase whose tokens
match it best. Thresholds keep GroundingDINO's meaning: a box survives when its best token beats
``box_threshold``; its phrase must then average at least ``text_threshold`` over its tokens.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
from PIL import Image

NMS_IOU = 0.5
Box = tuple[float, float, float, float]   # x0, y0, x1, y1 in pixels of the input image


@dataclass(frozen=True)
class Detection:
    phrase: str
    phrase_index: int
    box: Box
    score: float          # best token probability of the box (GroundingDINO's box score)
    phrase_score: float   # mean probability over the phrase's tokens

    def to_dict(self) -> dict:
        return {"phrase": self.phrase, "box": [round(v, 2) for v in self.box], "score": round(self.score, 4),
                "phrase_score": round(self.phrase_score, 4)}


def as_bounding_boxes(detections: Sequence[Detection]) -> list[dict]:
    """Detections in the layout of ComfyUI's BOUNDING_BOX type (``x``, ``y``, ``width``, ``height``,
    ``score`` in pixels, as core's SAM3 Detect writes it), with the phrase as ``label``."""
    return [{"x": d.box[0], "y": d.box[1], "width": d.box[2] - d.box[0], "height": d.box[3] - d.box[1],
             "score": d.score, "label": d.phrase} for d in detections]


@dataclass
class DetectionResult:
    detections: list[Detection]
    phrases: list[str]                        # the phrases that fit in the caption
    warnings: list[str] = field(default_factory=list)


def build_caption(phrases: Sequence[str]) -> tuple[str, list[tuple[int, int]]]:
    """``"left hand . sign text ."`` and each phrase's character span in it."""
    caption, spans = "", []
    for p in phrases:
        spans.append((len(caption), len(caption) + len(p)))
        caption += p + " . "
    return caption.rstrip(), spans


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    area_a = (a[:, 2] - a[:, 0]).clamp(min=0) * (a[:, 3] - a[:, 1]).clamp(min=0)
    area_b = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    return inter / (area_a[:, None] + area_b[None, :] - inter).clamp(min=1e-9)


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou: float = NMS_IOU) -> list[int]:
    """Indices kept by greedy non-maximum suppression, best first (small, no torchvision op needed)."""
    ious = box_iou(boxes, boxes)
    suppressed = torch.zeros(len(boxes), dtype=torch.bool)
    keep: list[int] = []
    for i in scores.argsort(descending=True).tolist():
        if not suppressed[i]:
            keep.append(i)
            suppressed |= ious[i] > iou
    return keep


class GroundingDetector:
    """A GroundingDINO model, its BERT tokenizer and image processor."""

    kind = "grounding-dino"

    def __init__(self, model, tokenizer, image_processor, name: str = ""):
        self.model, self.tokenizer, self.image_processor, self.name = model, tokenizer, image_processor, name

    @property
    def modules(self) -> list[torch.nn.Module]:
        return [self.model]

    @property
    def max_tokens(self) -> int:
        cfg = self.model.config
        return min(int(cfg.max_text_len), int(getattr(cfg.text_config, "max_position_embeddings", cfg.max_text_len)))

    @classmethod
    def from_folder(cls, path: str | Path) -> "GroundingDetector":
        """A transformers GroundingDINO folder (config.json, safetensors, tokenizer, processor config)."""
        from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor

        processor = AutoProcessor.from_pretrained(path, local_files_only=True, trust_remote_code=False)
        model = AutoModelForZeroShotObjectDetection.from_pretrained(
            path, local_files_only=True, trust_remote_code=False, use_safetensors=True, dtype=torch.float32)
        return cls(model.eval(), processor.tokenizer, processor.image_processor, name=Path(path).name)

    def _inputs(self, image: Image.Image, caption: str, resolution: int | None) -> tuple[dict, torch.Tensor]:
        kw = {}
        if resolution:
            kw["size"] = {"shortest_edge": int(resolution), "longest_edge": int(round(resolution * 1333 / 800))}
        pixels = self.image_processor(images=[image], return_tensors="pt", **kw)
        text = self.tokenizer([caption], return_tensors="pt", return_offsets_mapping=True, truncation=True,
                              max_length=self.max_tokens)
        offsets = text.pop("offset_mapping")[0]
        inputs = {"pixel_values": pixels["pixel_values"], "input_ids": text["input_ids"],
                  "attention_mask": text["attention_mask"]}
        if "pixel_mask" in pixels:
            inputs["pixel_mask"] = pixels["pixel_mask"]
        if "token_type_ids" in text:
            inputs["token_type_ids"] = text["token_type_ids"]
        return inputs, offsets

    @torch.inference_mode()
    def detect(self, image: Image.Image, phrases: Sequence[str], box_threshold: float = 0.3,
               text_threshold: float = 0.25, max_regions: int | None = None, resolution: int | None = None,
               device: torch.device | str | None = None) -> DetectionResult:
        """Boxes for ``phrases`` in ``image`` (RGB), best first, at most ``max_regions``."""
        warnings: list[str] = []
        phrases = [p for p in phrases if p]
        if not phrases:
            return DetectionResult([], [], ["no phrases to look for"])
        caption, spans = build_caption(phrases)
        inputs, offsets = self._inputs(image, caption, resolution)
        # tokens of each phrase (special tokens have an empty (0, 0) span)
        owners = [[t for t, (s, e) in enumerate(offsets.tolist()) if e > s and s < pe and e > ps] for ps, pe in spans]
        kept = [i for i, toks in enumerate(owners) if toks]
        if len(kept) < len(phrases):
            cut = [phrases[i] for i in range(len(phrases)) if not owners[i]]
            warnings.append(f"{len(cut)} phrase(s) did not fit in the detector's {self.max_tokens} tokens and were "
                            f"skipped: {', '.join(cut[:5])}")
        device = torch.device(device) if device is not None else next(self.model.parameters()).device
        dtype = next(self.model.parameters()).dtype
        inputs = {k: v.to(device=device, dtype=dtype if v.is_floating_point() else v.dtype) for k, v in inputs.items()}
        out = self.model(**inputs)
        probs = out.logits[0].float().sigmoid().cpu()          # [queries, max_text_len]
        boxes = out.pred_boxes[0].float().cpu()                # [queries, 4] cx, cy, w, h (relative)
        if not kept:
            return DetectionResult([], [], warnings)
        per_phrase_max = torch.stack([probs[:, owners[i]].max(-1).values for i in kept], -1)    # [Q, P]
        per_phrase_mean = torch.stack([probs[:, owners[i]].mean(-1) for i in kept], -1)        # [Q, P]
        box_score = per_phrase_max.max(-1).values
        label_score, label = per_phrase_mean.max(-1)
        ok = (box_score > box_threshold) & (label_score >= text_threshold)
        w, h = image.size
        cx, cy, bw, bh = boxes.unbind(-1)
        xyxy = torch.stack([(cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h], -1)
        xyxy[:, 0::2] = xyxy[:, 0::2].clamp(0, w)
        xyxy[:, 1::2] = xyxy[:, 1::2].clamp(0, h)
        found: list[Detection] = []
        for j in range(len(kept)):
            idx = torch.nonzero(ok & (label == j)).flatten()
            if idx.numel() == 0:
                continue
            for k in nms(xyxy[idx], box_score[idx]):
                q = int(idx[k])
                found.append(Detection(phrases[kept[j]], kept[j], tuple(float(v) for v in xyxy[q]),
                                       float(box_score[q]), float(label_score[q])))
        found.sort(key=lambda d: (-d.score, d.phrase_index))
        if max_regions:
            found = found[:max_regions]
        return DetectionResult(found, [phrases[i] for i in kept], warnings)
