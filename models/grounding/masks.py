"""Mask operations for inpainting: grow, feather, union, and a preview with boxes and masks drawn.

Masks are float32 torch tensors in [0, 1] shaped [..., H, W] (ComfyUI's MASK layout), on the CPU.
"""
from __future__ import annotations

import colorsys
import math
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

from .detect import Detection


def empty(height: int, width: int, batch: int = 1) -> torch.Tensor:
    return torch.zeros((batch, height, width), dtype=torch.float32)


def _as4d(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Size]:
    shape = mask.shape
    return mask.reshape(-1, 1, shape[-2], shape[-1]).float(), shape


def grow(mask: torch.Tensor, pixels: int) -> torch.Tensor:
    """Dilate (pixels > 0) or erode (pixels < 0) with a square of side 2*|pixels|+1."""
    if pixels == 0 or mask.numel() == 0:
        return mask.float()
    m, shape = _as4d(mask)
    k = 2 * abs(pixels) + 1
    if pixels > 0:
        out = F.max_pool2d(m, k, stride=1, padding=abs(pixels))
    else:   # erosion; the image border counts as inside so edge regions do not shrink away from it
        out = -F.max_pool2d(F.pad(-m, [abs(pixels)] * 4, mode="replicate"), k, stride=1)
    return out.reshape(shape)


def feather(mask: torch.Tensor, pixels: int) -> torch.Tensor:
    """Soften edges with a Gaussian blur (sigma = pixels / 2) so inpainting blends in."""
    if pixels <= 0 or mask.numel() == 0:
        return mask.float()
    m, shape = _as4d(mask)
    sigma = pixels / 2.0
    radius = max(1, int(math.ceil(3 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-(x ** 2) / (2 * sigma ** 2))
    kernel = kernel / kernel.sum()
    m = F.conv2d(F.pad(m, [radius, radius, 0, 0], mode="replicate"), kernel.view(1, 1, 1, -1))
    m = F.conv2d(F.pad(m, [0, 0, radius, radius], mode="replicate"), kernel.view(1, 1, -1, 1))
    return m.clamp(0, 1).reshape(shape)


def refine(mask: torch.Tensor, grow_pixels: int = 0, feather_pixels: int = 0) -> torch.Tensor:
    return feather(grow(mask, grow_pixels), feather_pixels)


def union(masks: torch.Tensor) -> torch.Tensor:
    """[N, H, W] -> [H, W] (zeros when N == 0 cannot be shaped: use ``empty``)."""
    return masks.float().amax(0)


def tint(images: torch.Tensor, mask: torch.Tensor | None, color: Sequence[float] = (1.0, 0.2, 0.15),
         alpha: float = 0.55) -> torch.Tensor:
    """RGB copies of an IMAGE batch [B, H, W, C] with ``mask`` ([..., H, W] in [0, 1], resized to the
    images when sizes differ) tinted in: a round's mask shown over the image it repaired."""
    rgb = images[..., :3].float() if images.shape[-1] >= 3 else images[..., :1].float().expand(*images.shape[:-1], 3)
    if mask is None or mask.numel() == 0:
        return rgb.clone()
    m = mask.float().reshape(-1, 1, *mask.shape[-2:])[:1]
    if m.shape[-2:] != rgb.shape[1:3]:
        m = F.interpolate(m, size=tuple(rgb.shape[1:3]), mode="bilinear", align_corners=False)
    m = (alpha * m.clamp(0, 1))[:, 0, :, :, None].to(rgb.device)
    return rgb * (1 - m) + torch.tensor(list(color), dtype=rgb.dtype, device=rgb.device) * m


def palette(n: int) -> list[tuple[int, int, int]]:
    return [tuple(int(255 * c) for c in colorsys.hsv_to_rgb((i * 0.61803) % 1.0, 0.85, 1.0)) for i in range(max(n, 1))]


def draw_preview(image: Image.Image, detections: Sequence[Detection], masks: np.ndarray | torch.Tensor | None,
                 n_phrases: int, alpha: float = 0.45) -> Image.Image:
    """The image with each detection's mask tinted by its phrase, its box and a ``phrase score`` label."""
    base = image.convert("RGB")
    colors = palette(n_phrases)
    arr = np.asarray(base, dtype=np.float32)
    if masks is not None and len(detections):
        masks = masks.numpy() if isinstance(masks, torch.Tensor) else masks
        for det, m in zip(detections, masks):
            sel = m.astype(bool)
            arr[sel] = arr[sel] * (1 - alpha) + np.array(colors[det.phrase_index % len(colors)]) * alpha
    out = Image.fromarray(arr.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(out)
    font = ImageFont.load_default()
    width = max(1, round(min(out.size) / 256))
    for det in detections:
        color = colors[det.phrase_index % len(colors)]
        x0, y0, x1, y1 = det.box
        draw.rectangle([x0, y0, max(x0, x1 - 1), max(y0, y1 - 1)], outline=color, width=width)
        label = f"{det.phrase} {det.score:.2f}"
        tx, ty = x0 + 2, max(0, y0 - 12) if y0 >= 12 else y0 + 2
        l, t, r, b = draw.textbbox((tx, ty), label, font=font)
        draw.rectangle([l - 1, t - 1, r + 1, b + 1], fill=(0, 0, 0))
        draw.text((tx, ty), label, fill=color, font=font)
    return out
