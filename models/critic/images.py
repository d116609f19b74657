"""Image checks and preparation shared by every backend."""
from __future__ import annotations

import math

import numpy as np
from PIL import Image
from ..errors import RationalRewardsError

MIN_SIDE = 16


class ImageError(RationalRewardsError, ValueError):
    """An input image the critic cannot read; the message says what to change."""


def to_rgb(img: Image.Image, what: str = "image") -> Image.Image:
    """RGB copy of ``img`` for the critic, which needs at least ``MIN_SIDE`` pixels a side."""
    if img.width < MIN_SIDE or img.height < MIN_SIDE:
        raise ImageError(f"{what} is {img.width}x{img.height} pixels; the critic needs at least "
                         f"{MIN_SIDE}x{MIN_SIDE}. Upscale or crop it to a real image size first.")
    return flatten_rgb(img)


def flatten_rgb(img: Image.Image) -> Image.Image:
    """RGB of ``img`` (any size): transparency is flattened onto white, greyscale is expanded."""
    if img.mode == "RGB":
        return img
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def from_unit_floats(batch: np.ndarray) -> list[Image.Image]:
    """A batch [B,H,W,C] of floats in [0, 1] (C = 1, 3 or 4: greyscale, RGB, RGBA) as PIL images, rounded
    to 8 bits (how a ComfyUI IMAGE becomes what the critic sees)."""
    channels = batch.shape[-1]
    arr = (np.clip(batch, 0.0, 1.0) * 255.0).round().astype(np.uint8)
    mode = {1: "L", 3: "RGB", 4: "RGBA"}[channels]
    return [Image.fromarray(a[..., 0] if channels == 1 else a, mode) for a in arr]


def fit_max_pixels(img: Image.Image, max_pixels: int | None) -> Image.Image:
    """Downscale (never upscale) so that width*height <= max_pixels, keeping the aspect ratio."""
    if not max_pixels or img.width * img.height <= max_pixels:
        return img
    scale = math.sqrt(max_pixels / (img.width * img.height))
    size = (max(MIN_SIDE, int(img.width * scale)), max(MIN_SIDE, int(img.height * scale)))
    return img.resize(size, Image.Resampling.BICUBIC)


def prepare(img: Image.Image, max_pixels: int | None = None, what: str = "image") -> Image.Image:
    return fit_max_pixels(to_rgb(img, what), max_pixels)
