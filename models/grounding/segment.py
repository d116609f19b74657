"""Box prompts to masks: transformers SAM / SAM 2, Meta's segment-anything, or plain box masks.

Every segmenter returns one boolean mask per box, shaped like the image ([N, H, W]); ``multimask``
picks among SAM's candidate masks: ``single`` (one mask, SAM's own choice), ``best`` (highest
predicted IoU of three), ``largest`` or ``smallest``.
"""
from __future__ import annotations

import inspect
import math
import re
from pathlib import Path
from typing import Mapping, Protocol, Sequence

import numpy as np
import torch
from PIL import Image

from .detect import Box
from .files import read_tensors
from ..errors import RationalRewardsError

MULTIMASK = ("single", "best", "largest", "smallest")


class Segmenter(Protocol):
    kind: str
    name: str

    @property
    def modules(self) -> list[torch.nn.Module]: ...

    def segment(self, image: Image.Image, boxes: Sequence[Box], multimask: str = "best",
                device: torch.device | str | None = None) -> np.ndarray: ...


def choose(masks: torch.Tensor, scores: torch.Tensor | None, multimask: str) -> torch.Tensor:
    """[N, M, H, W] candidates -> [N, H, W] by the ``multimask`` rule."""
    if masks.shape[1] == 1 or multimask == "single":
        return masks[:, 0]
    if multimask == "best":
        pick = scores.argmax(-1) if scores is not None else torch.zeros(masks.shape[0], dtype=torch.long)
    else:
        area = masks.flatten(2).sum(-1)
        pick = area.argmax(-1) if multimask == "largest" else area.argmin(-1)
    return masks[torch.arange(masks.shape[0]), pick]


def _check(multimask: str) -> None:
    if multimask not in MULTIMASK:
        raise ValueError(f"multimask must be one of {MULTIMASK}; got {multimask!r}")


class BoxSegmenter:
    """No segmentation model: each box becomes a filled rectangle."""

    kind = "boxes"
    name = "none (box masks)"
    modules: list = []

    def segment(self, image: Image.Image, boxes: Sequence[Box], multimask: str = "best",
                device: torch.device | str | None = None) -> np.ndarray:
        w, h = image.size
        out = np.zeros((len(boxes), h, w), dtype=bool)
        for i, (x0, y0, x1, y1) in enumerate(boxes):
            c0, r0 = min(w - 1, max(0, int(math.floor(x0)))), min(h - 1, max(0, int(math.floor(y0))))
            c1, r1 = min(w, max(c0 + 1, int(math.ceil(x1)))), min(h, max(r0 + 1, int(math.ceil(y1))))
            out[i, r0:r1, c0:c1] = True
        return out


class HFSegmenter:
    """transformers ``SamModel`` or ``Sam2Model`` with its processor."""

    def __init__(self, model, processor, name: str = ""):
        self.model, self.processor, self.name = model, processor, name
        self.kind = "sam2" if "sam2" in type(model).__name__.lower() else "sam"

    @property
    def modules(self) -> list[torch.nn.Module]:
        return [self.model]

    @classmethod
    def from_folder(cls, path: str | Path) -> "HFSegmenter":
        from transformers import AutoConfig, AutoModel, AutoProcessor

        config = AutoConfig.from_pretrained(path, local_files_only=True, trust_remote_code=False)
        if config.model_type not in ("sam", "sam2"):
            raise ValueError(f"{Path(path).name} is a {config.model_type!r} model; expected SAM (sam) or SAM 2 (sam2)")
        processor = AutoProcessor.from_pretrained(path, local_files_only=True, trust_remote_code=False)
        model = AutoModel.from_pretrained(path, local_files_only=True, trust_remote_code=False, use_safetensors=True,
                                          dtype=torch.float32)
        return cls(model.eval(), processor, name=Path(path).name)

    @torch.inference_mode()
    def segment(self, image: Image.Image, boxes: Sequence[Box], multimask: str = "best",
                device: torch.device | str | None = None) -> np.ndarray:
        _check(multimask)
        if not boxes:
            return np.zeros((0, image.height, image.width), dtype=bool)
        inputs = self.processor(images=image, input_boxes=[[list(map(float, b)) for b in boxes]], return_tensors="pt")
        device = torch.device(device) if device is not None else next(self.model.parameters()).device
        dtype = next(self.model.parameters()).dtype
        model_inputs = {k: v.to(device=device, dtype=dtype if v.is_floating_point() else v.dtype)
                        for k, v in inputs.items() if k in ("pixel_values", "input_boxes")}
        out = self.model(**model_inputs, multimask_output=multimask != "single")
        pred = out.pred_masks.float().cpu()
        post = self.processor.image_processor.post_process_masks
        # SAM's takes the resized input sizes; SAM 2's does not (and in transformers 4.57 its third
        # positional parameter is the mask threshold, though its processor still returns those sizes)
        if "reshaped_input_sizes" in inspect.signature(post).parameters and "reshaped_input_sizes" in inputs:
            masks = post(pred, inputs["original_sizes"].cpu(), reshaped_input_sizes=inputs["reshaped_input_sizes"].cpu())[0]
        else:
            masks = post(pred, inputs["original_sizes"].cpu())[0]
        scores = out.iou_scores[0].float().cpu() if getattr(out, "iou_scores", None) is not None else None
        return choose(masks.bool(), scores, multimask).numpy()


# --- Meta's segment-anything checkpoints (sam_vit_h_4b8939.pth & co.) ---------------------------------

class MetaSamError(RationalRewardsError, ValueError):
    """A .pth that is not a plain SAM checkpoint (SAM-HQ, MobileSAM, SAM 2 ...)."""


def _count(sd: Mapping[str, torch.Tensor], pattern: str) -> int:
    rx = re.compile(pattern)
    return len({m.group(1) for k in sd for m in [rx.match(k)] if m})


def meta_sam_config(sd: Mapping[str, torch.Tensor]) -> dict:
    """Build arguments of Meta's SAM read from the weights (the released vit_b/l/h and smaller ones).

    Decoder attention uses 8 heads, as in every released SAM."""
    if any(k.startswith("image_encoder.trunk.") for k in sd):
        raise MetaSamError("this is a SAM 2 checkpoint from Meta's sam2 package; use a SAM 2 folder in Hugging Face "
                           "format instead (e.g. facebook/sam2.1-hiera-large)")
    if any(k.startswith("mask_decoder.hf_") or "compress_vit_feat" in k for k in sd):
        raise MetaSamError("this is a SAM-HQ checkpoint, which the segment-anything package cannot run; use plain "
                           "SAM (sam_vit_*.pth) or a Hugging Face SAM folder")
    if "image_encoder.patch_embed.proj.weight" not in sd or "image_encoder.pos_embed" not in sd:
        raise MetaSamError("not a segment-anything SAM checkpoint (no ViT image encoder; MobileSAM is not supported)")
    proj = sd["image_encoder.patch_embed.proj.weight"]
    embed, patch = proj.shape[0], proj.shape[-1]
    grid = sd["image_encoder.pos_embed"].shape[1]
    depth = _count(sd, r"^image_encoder\.blocks\.(\d+)\.")
    rel = [sd[f"image_encoder.blocks.{i}.attn.rel_pos_h"] for i in range(depth)]
    head_dim = rel[0].shape[1]
    global_blocks = [i for i, r in enumerate(rel) if r.shape[0] == 2 * grid - 1]
    windowed = [r.shape[0] for i, r in enumerate(rel) if i not in global_blocks]
    window = (windowed[0] + 1) // 2 if windowed else 0
    return dict(
        img_size=grid * patch, patch_size=patch, embed_dim=embed, depth=depth, num_heads=embed // head_dim,
        out_chans=sd["image_encoder.neck.0.weight"].shape[0], window_size=window, global_attn_indexes=global_blocks,
        prompt_embed_dim=sd["prompt_encoder.point_embeddings.0.weight"].shape[1],
        mask_in_chans=sd["prompt_encoder.mask_downscaling.3.weight"].shape[0],
        transformer_dim=sd["mask_decoder.iou_token.weight"].shape[1],
        decoder_depth=_count(sd, r"^mask_decoder\.transformer\.layers\.(\d+)\."),
        decoder_mlp_dim=sd["mask_decoder.transformer.layers.0.mlp.lin1.weight"].shape[0],
        num_multimask_outputs=sd["mask_decoder.mask_tokens.weight"].shape[0] - 1,
        iou_head_depth=_count(sd, r"^mask_decoder\.iou_prediction_head\.layers\.(\d+)\."),
        iou_head_hidden_dim=sd["mask_decoder.iou_prediction_head.layers.0.weight"].shape[0])


def build_meta_sam(sd: Mapping[str, torch.Tensor]):
    """A segment-anything ``Sam`` with these weights (strict load). Imports the package lazily."""
    from functools import partial

    try:
        from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer
    except ImportError:
        raise MetaSamError("SAM .pth files need Meta's segment-anything package: pip install segment-anything "
                           "(or use a Hugging Face SAM folder, which needs nothing extra)") from None
    c = meta_sam_config(sd)
    grid = c["img_size"] // c["patch_size"]
    sam = Sam(
        image_encoder=ImageEncoderViT(
            img_size=c["img_size"], patch_size=c["patch_size"], embed_dim=c["embed_dim"], depth=c["depth"],
            num_heads=c["num_heads"], mlp_ratio=4.0, out_chans=c["out_chans"], qkv_bias=True,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), use_rel_pos=True, window_size=c["window_size"],
            global_attn_indexes=c["global_attn_indexes"]),
        prompt_encoder=PromptEncoder(embed_dim=c["prompt_embed_dim"], image_embedding_size=(grid, grid),
                                     input_image_size=(c["img_size"], c["img_size"]), mask_in_chans=c["mask_in_chans"]),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=c["num_multimask_outputs"],
            transformer=TwoWayTransformer(depth=c["decoder_depth"], embedding_dim=c["transformer_dim"],
                                          mlp_dim=c["decoder_mlp_dim"], num_heads=8),
            transformer_dim=c["transformer_dim"], iou_head_depth=c["iou_head_depth"],
            iou_head_hidden_dim=c["iou_head_hidden_dim"]),
        pixel_mean=[123.675, 116.28, 103.53], pixel_std=[58.395, 57.12, 57.375])
    sam.load_state_dict(dict(sd), strict=True)
    return sam.eval()


class MetaSegmenter:
    """Meta's ``Sam`` run through ``SamPredictor`` (its own resize and normalisation)."""

    kind = "sam-pth"

    def __init__(self, sam, name: str = ""):
        self.sam, self.name = sam, name

    @property
    def modules(self) -> list[torch.nn.Module]:
        return [self.sam]

    @classmethod
    def from_file(cls, path: str | Path) -> "MetaSegmenter":
        """Pickles are read with ``weights_only=True``: tensors only, no code."""
        ckpt = read_tensors(Path(path))
        sd = ckpt.get("model", ckpt) if isinstance(ckpt, dict) else ckpt
        if not isinstance(sd, dict):
            raise MetaSamError(f"{Path(path).name} holds no state dict")
        return cls(build_meta_sam({k: v for k, v in sd.items() if isinstance(v, torch.Tensor)}), Path(path).name)

    @torch.inference_mode()
    def segment(self, image: Image.Image, boxes: Sequence[Box], multimask: str = "best",
                device: torch.device | str | None = None) -> np.ndarray:
        from segment_anything import SamPredictor

        _check(multimask)
        if not boxes:
            return np.zeros((0, image.height, image.width), dtype=bool)
        predictor = SamPredictor(self.sam)           # uses the model's current device
        predictor.set_image(np.asarray(image.convert("RGB")))
        tboxes = predictor.transform.apply_boxes_torch(torch.tensor(boxes, dtype=torch.float32,
                                                                    device=predictor.device), (image.height, image.width))
        masks, scores, _ = predictor.predict_torch(None, None, boxes=tboxes, multimask_output=multimask != "single")
        return choose(masks.cpu(), scores.float().cpu(), multimask).numpy()
