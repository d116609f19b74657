"""Model inputs for Qwen-VL critics built in torch, instead of by a processor call per batch.

They are the inputs ``processor(text=..., images=..., padding=True, return_tensors="pt")`` gives
(input_ids, attention_mask, mm_token_type_ids where the processor returns them, pixel_values,
image_grid_thw), for a fraction of its CPU time:

* the chat text is rendered and tokenized once per (template, request), with one image token per image,
  and cached; the image tokens are expanded in the ids (the processor expands ~1000 placeholder strings
  per image and tokenizes them again on every call);
* a ComfyUI IMAGE tensor becomes pixel values without a PIL round trip: its 8-bit levels by the pack's one
  rounding (``critic/images.unit_levels``), at most one resize, straight to the processor's grid (its own
  ``smart_resize`` rule and min/max pixels, applied to the critic's ``max_pixels`` fit), then normalised
  and cut into patches in one copy.

It mirrors the image processor of Qwen2-VL, which Qwen2-VL, Qwen2.5-VL and Qwen3-VL checkpoints use:
resizing as that processor does (torchvision's antialiased resize for its torch backend, PIL's for its PIL
backend) and normalising with the processor's own fused constants. Any other processor is not mirrored
(:class:`Unsupported`). When built, a probe image holding every 8-bit level goes through both paths and
must give identical pixel values; the backend compares its first batch with the processor's output too
and uses the processor alone after any difference.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from ..critic.images import CriticInput, TensorImage, flatten_rgb, unit_levels
from ..critic.prompting import ChatRequest

log = logging.getLogger("RationalRewards")
_PIL_BICUBIC = int(Image.Resampling.BICUBIC)
TEXT_CACHE = 256   # (template, request) texts kept tokenized per backend


def _device_image_processors() -> tuple[type, ...]:
    """Image-processor classes that work in torch and take ``device=``: the torchvision backend of
    transformers >= 5.4, the "fast" processors before it (4.57-5.3)."""
    found: list[type] = []
    try:
        from transformers.image_processing_backends import TorchvisionBackend
        found.append(TorchvisionBackend)
    except ImportError:
        pass
    try:
        from transformers.image_processing_utils_fast import BaseImageProcessorFast
        found.append(BaseImageProcessorFast)
    except ImportError:
        pass
    return tuple(found)


DEVICE_IMAGE_PROCESSORS = _device_image_processors()


class Unsupported(Exception):
    """The processor is not one this module mirrors exactly; the message says why."""


def chat_messages(system: str | None, parts: Sequence[tuple[str, object]]) -> list[dict]:
    """Chat-template messages of one request (images as bare ``{"type": "image"}`` slots)."""
    content = [{"type": "image"} if kind == "image" else {"type": "text", "text": part} for kind, part in parts]
    return ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": content}]


@dataclass(frozen=True)
class Vision:
    """What a Qwen2-VL image processor does to an image, read from it once."""
    patch: int
    merge: int
    temporal: int
    min_pixels: int
    max_pixels: int
    mean: tuple[float, ...]      # per channel, float32 values; in 8-bit units when ``rescale`` is None
    std: tuple[float, ...]
    rescale: float | None        # None: rescale folded into mean/std (torch backend); else x*rescale in
                                 # float64 first, then (x - mean) / std in float32 (numpy backend)
    torch_resize: bool           # torchvision resize (the processor's torch backend); else PIL's

    @property
    def factor(self) -> int:
        return self.patch * self.merge

    def grid_size(self, height: int, width: int) -> tuple[int, int]:
        """(height, width) the processor resizes an image of this size to."""
        from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize
        return smart_resize(height, width, factor=self.factor, min_pixels=self.min_pixels,
                            max_pixels=self.max_pixels)


def vision_of(image_processor) -> Vision:
    """The :class:`Vision` of a Qwen2-VL-style image processor; :class:`Unsupported` for anything else."""
    ip = image_processor
    needed = ("patch_size", "merge_size", "temporal_patch_size", "image_mean", "image_std", "rescale_factor")
    missing = [a for a in needed if getattr(ip, a, None) is None]
    if missing:
        raise Unsupported(f"{type(ip).__name__} has no {', '.join(missing)} (not a Qwen2-VL image processor)")
    for flag in ("do_resize", "do_rescale", "do_normalize"):
        if getattr(ip, flag, True) is not True:
            raise Unsupported(f"{type(ip).__name__}.{flag} is off")
    if getattr(ip, "resample", _PIL_BICUBIC) != _PIL_BICUBIC:        # PIL's and transformers' enums are ints
        raise Unsupported(f"{type(ip).__name__} resamples with {ip.resample!r}, not bicubic")
    size = getattr(ip, "size", None) or {}     # a dict (4.x) or a SizeDict (5.x)
    edge = size.get if isinstance(size, dict) else lambda key: getattr(size, key, None)
    min_pixels = edge("shortest_edge") or getattr(ip, "min_pixels", None)
    max_pixels = edge("longest_edge") or getattr(ip, "max_pixels", None)
    if not min_pixels or not max_pixels:
        raise Unsupported(f"{type(ip).__name__} has no min/max pixels")
    mean, std = torch.tensor(ip.image_mean), torch.tensor(ip.image_std)    # float32, as both backends hold them
    if mean.shape != (3,) or std.shape != (3,):
        raise Unsupported(f"{type(ip).__name__} normalises {mean.numel()} channels, not RGB")
    torch_resize = isinstance(ip, DEVICE_IMAGE_PROCESSORS)
    rescale = None if torch_resize else float(ip.rescale_factor)
    if torch_resize:   # the torch backend's fused constants: mean/std times 1/rescale_factor, in float32
        mean, std = mean * (1.0 / ip.rescale_factor), std * (1.0 / ip.rescale_factor)
    return Vision(int(ip.patch_size), int(ip.merge_size), int(ip.temporal_patch_size), int(min_pixels),
                  int(max_pixels), tuple(mean.tolist()), tuple(std.tolist()), rescale, torch_resize)


class QwenInputs:
    """Builds a batch's model inputs the way the checkpoint's Qwen-VL processor does (see the module text)."""

    def __init__(self, processor):
        self.processor = processor
        self.tokenizer = getattr(processor, "tokenizer", None)
        image_token = getattr(processor, "image_token", None)
        if self.tokenizer is None or image_token is None or not hasattr(processor, "image_processor"):
            raise Unsupported(f"{type(processor).__name__} has no tokenizer, image token or image processor")
        self.vision = vision_of(processor.image_processor)
        self.image_token_id = int(self.tokenizer.convert_tokens_to_ids(image_token))
        self.video_token_id = getattr(processor, "video_token_id", None)
        if self.tokenizer.pad_token_id is None:
            raise Unsupported("the tokenizer has no pad token")
        # what the processor returns besides pixel values and grids; narrowed by the backend's first check
        self.keys = {"input_ids", "attention_mask", "mm_token_type_ids", "pixel_values", "image_grid_thw"}
        self._ids = lru_cache(maxsize=TEXT_CACHE)(self._tokenize)
        self._probe()

    @classmethod
    def for_processor(cls, processor) -> "QwenInputs | None":
        """A builder for ``processor``, or None where it is not mirrored (the processor then builds every batch)."""
        try:
            return cls(processor)
        except Unsupported as e:
            log.info("RationalRewards: model inputs come from the processor (%s)", e)
            return None

    # -- text ---------------------------------------------------------------------------------------------
    def text_ids(self, request: ChatRequest) -> torch.Tensor:
        """Token ids of the request's chat text with one image token per image (cached; do not modify)."""
        key = (request.system, tuple((kind, None if kind == "image" else part) for kind, part in request.parts))
        return self._ids(key)

    def _tokenize(self, key) -> torch.Tensor:
        system, parts = key
        text = self.processor.apply_chat_template(chat_messages(system, parts), add_generation_prompt=True,
                                                  tokenize=False)
        return torch.tensor(self.tokenizer(text)["input_ids"], dtype=torch.long)

    def handles(self, requests: Sequence[ChatRequest]) -> bool:
        """Each request has images and exactly one image token per image (else the processor decides, and
        reports a mismatch its own way)."""
        return all(r.images and int((self.text_ids(r) == self.image_token_id).sum()) == len(r.images)
                   for r in requests)

    # -- images -------------------------------------------------------------------------------------------
    def target_size(self, img: CriticInput) -> tuple[int, int]:
        """(height, width) of the image as the model sees it: the processor's grid for its fitted size."""
        width, height = img.size
        return self.vision.grid_size(height, width)

    def pixel_rows(self, img: CriticInput, device: torch.device | str = "cpu") -> tuple[torch.Tensor, list[int]]:
        """(pixel_values rows, [t, h, w] grid) of one image, as the processor gives them."""
        th, tw = self.target_size(img)
        if isinstance(img, TensorImage):
            pixels = img.pixels.to(device)
            levels = unit_levels(pixels).contiguous()          # (H, W, 1 or 3) float32, a new tensor
            if tuple(pixels.shape[:2]) != (th, tw):
                levels = self._resize(_uint8(levels), th, tw, device)
        else:                                                  # PIL: already RGB and fitted by prepare()
            u8 = torch.from_numpy(np.array(flatten_rgb(img))).to(device)
            levels = u8.float() if (img.height, img.width) == (th, tw) else self._resize(u8, th, tw, device)
        return self._patches(levels), [1, th // self.vision.patch, tw // self.vision.patch]

    def _resize(self, u8: torch.Tensor, th: int, tw: int, device) -> torch.Tensor:
        """The processor's one resize of 8-bit pixels (H, W, C) to (th, tw); float levels (th, tw, 3) out."""
        u8 = u8.expand(*u8.shape[:2], 3)
        if self.vision.torch_resize:
            from torchvision.transforms.v2 import functional as tvF
            # (1, 3, H, W) view of HWC memory: channels-last, torch's fast uint8 antialias kernels
            out = tvF.resize(u8.permute(2, 0, 1)[None], [th, tw], interpolation=tvF.InterpolationMode.BICUBIC,
                             antialias=True)
            return out[0].permute(1, 2, 0).float().contiguous()
        pil = Image.fromarray(u8.cpu().contiguous().numpy(), "RGB").resize((tw, th), Image.Resampling.BICUBIC)
        return torch.from_numpy(np.array(pil)).to(device).float()

    def _patches(self, levels: torch.Tensor) -> torch.Tensor:
        """Normalised patches (rows: merge-grouped patches; columns: channel, frame, patch pixels) of float
        levels (H, W, 1 or 3), like the processor's patchify; ``levels`` may be changed in place."""
        v = self.vision
        h, w, c = levels.shape
        p, m, t = v.patch, v.merge, v.temporal
        if v.rescale is not None:
            levels = levels.double().mul_(v.rescale).float()
        uniform = len(set(v.mean)) == 1 and len(set(v.std)) == 1
        if uniform:          # scalar ops on the smaller tensor, before the frames are repeated
            levels.sub_(v.mean[0]).div_(v.std[0])
        levels = levels.expand(h, w, 3)
        gh, gw = h // (p * m), w // (p * m)
        src = levels.view(gh, m, p, gw, m, p, 3).permute(0, 3, 1, 4, 6, 2, 5)     # gh gw m m C p p
        out = torch.empty(gh, gw, m, m, 3, t, p, p, dtype=torch.float32, device=levels.device)
        out.copy_(src.unsqueeze(5).expand(gh, gw, m, m, 3, t, p, p))
        out = out.view(gh * gw * m * m, 3, t * p * p)
        if not uniform:
            for ch in range(3):
                out[:, ch].sub_(v.mean[ch]).div_(v.std[ch])
        return out.view(out.shape[0], -1)

    # -- a batch ------------------------------------------------------------------------------------------
    def encode(self, requests: Sequence[ChatRequest], device: torch.device | str = "cpu"):
        """The batch's model inputs (a ``BatchFeature``), left- or right-padded like the tokenizer pads."""
        from transformers import BatchFeature

        merge2 = self.vision.merge ** 2
        rows, grids, ids = [], [], []
        for req in requests:
            counts = []
            for img in req.images:
                r, g = self.pixel_rows(img, device)
                rows.append(r)
                grids.append(g)
                counts.append(g[0] * g[1] * g[2] // merge2)
            ids.append(self._expand(self.text_ids(req), counts))
        longest = max(len(x) for x in ids)
        pad = self.tokenizer.pad_token_id
        left = getattr(self.tokenizer, "padding_side", "right") == "left"
        input_ids = torch.full((len(ids), longest), pad, dtype=torch.long)
        mask = torch.zeros((len(ids), longest), dtype=torch.long)
        for i, x in enumerate(ids):
            span = slice(longest - len(x), longest) if left else slice(0, len(x))
            input_ids[i, span] = x
            mask[i, span] = 1
        data = {"input_ids": input_ids, "attention_mask": mask,
                "mm_token_type_ids": self._token_types(input_ids),
                "pixel_values": rows[0] if len(rows) == 1 else torch.cat(rows),
                "image_grid_thw": torch.tensor(grids, dtype=torch.long)}
        return BatchFeature({k: v for k, v in data.items() if k in self.keys})

    def _expand(self, ids: torch.Tensor, counts: list[int]) -> torch.Tensor:
        """``ids`` with its i-th image token repeated ``counts[i]`` times (the processor's placeholder expansion)."""
        pieces, start = [], 0
        for at, n in zip((ids == self.image_token_id).nonzero().flatten().tolist(), counts):
            pieces += [ids[start:at], ids.new_full((n,), self.image_token_id)]
            start = at + 1
        return torch.cat(pieces + [ids[start:]])

    def _token_types(self, input_ids: torch.Tensor) -> torch.Tensor:
        types = (input_ids == self.image_token_id).long()
        if self.video_token_id is not None:
            types[input_ids == int(self.video_token_id)] = 2
        return types

    # -- checks against the processor -----------------------------------------------------------------------
    def _probe(self) -> None:
        """Every 8-bit level through the processor and through this module, as PIL and as a tensor: the
        pixel values must be identical, or the processor is not mirrored."""
        v = self.vision
        side = v.factor * math.ceil(math.sqrt(max(v.min_pixels, 256)) / v.factor)   # on the grid: no resize
        if side * side > v.max_pixels:
            raise Unsupported("no probe size fits the processor's min/max pixels")
        k = np.arange(side * side, dtype=np.int64).reshape(side, side, 1)
        probe = ((k * 7 + np.array([0, 85, 170])) % 256).astype(np.uint8)
        pil = Image.fromarray(probe, "RGB")
        try:
            ref = self.processor.image_processor(images=[pil], return_tensors="pt")
        except Exception as e:   # a processor that cannot take a plain RGB image is not one this mirrors
            raise Unsupported(f"the processor failed on a probe image ({type(e).__name__}: {e})") from None
        for img in (pil, TensorImage(torch.from_numpy(probe).float() / 255.0)):
            rows, grid = self.pixel_rows(img)
            if not (torch.equal(rows, ref["pixel_values"]) and [grid] == ref["image_grid_thw"].tolist()):
                name = type(self.processor.image_processor).__name__
                raise Unsupported(f"pixel values of a probe image differ from {name}'s")

    def differences(self, ours, reference, requests: Sequence[ChatRequest]) -> str | None:
        """What differs between this module's inputs and the processor's for the same batch (None: nothing).

        Pixel values are compared exactly for images whose ``max_pixels`` fit does not bind; where it binds
        the processor path resizes twice (the PIL fit, then its grid) and this one once, so only their
        grid and row count are compared."""
        ref_keys = set(reference.keys())
        if not ref_keys <= set(ours.keys()):
            return f"the processor also returns {sorted(ref_keys - set(ours.keys()))}"
        for key in sorted(ref_keys - {"pixel_values"}):
            if not torch.equal(ours[key].cpu(), reference[key].cpu()):
                return f"{key} differ"
        a, b = ours["pixel_values"].cpu(), reference["pixel_values"].cpu()
        if a.shape != b.shape or a.dtype != b.dtype:
            return f"pixel_values are {tuple(a.shape)} {a.dtype}, the processor's {tuple(b.shape)} {b.dtype}"
        start = 0
        images = [img for r in requests for img in r.images]
        for img, (t, h, w) in zip(images, reference["image_grid_thw"].tolist()):
            n = t * h * w
            exact = not isinstance(img, TensorImage) or img.size == img.source_size
            if exact and not torch.equal(a[start:start + n], b[start:start + n]):
                return "pixel_values differ"
            start += n
        self.keys = ref_keys
        for extra in set(ours.keys()) - ref_keys:   # e.g. mm_token_type_ids, which transformers 4.57 refuses
            ours.pop(extra)
        return None


def _uint8(levels: torch.Tensor) -> torch.Tensor:
    """Whole-number float levels as uint8 (numpy's cast on the CPU: several times faster than torch's)."""
    if levels.device.type == "cpu":
        return torch.from_numpy(levels.numpy().astype(np.uint8))
    return levels.to(torch.uint8)
