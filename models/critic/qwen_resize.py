"""The Qwen-VL processors' resize rule, for runtimes that resize images their own way.

transformers' Qwen2-VL/Qwen3-VL image processor snaps each image to multiples of (patch x merge) pixels
(``smart_resize``: round each side, then scale into [min_pixels, max_pixels]) with a bicubic filter.
ComfyUI's own Qwen3-VL (``process_qwen2vl_images``) uses the same rounding but a bilinear filter and its
own limits (min 3,136, max 12,845,056 px). Resizing an image here first, to the processor's size with the
processor's filter, leaves ComfyUI nothing to resize (an image already at a multiple of 32 passes through
unchanged), so the native critic sees the pixels the checkpoint was trained on: the same as the
transformers backend, after ``max_pixels`` (``Critic.prepare``) is applied.
"""
from __future__ import annotations

import math

from PIL import Image

from .images import as_pil

# Qwen3-VL-8B-Instruct's preprocessor_config.json: size.shortest_edge / size.longest_edge, patch 16 x merge 2
QWEN3_VL_MIN_PIXELS = 65_536
QWEN3_VL_MAX_PIXELS = 16_777_216
QWEN3_VL_FACTOR = 32


def processor_size(height: int, width: int, factor: int = QWEN3_VL_FACTOR, min_pixels: int = QWEN3_VL_MIN_PIXELS,
                   max_pixels: int = QWEN3_VL_MAX_PIXELS) -> tuple[int, int]:
    """(height, width) the processor resizes an image to (transformers' ``smart_resize``)."""
    if max(height, width) / min(height, width) > 200:
        raise ValueError(f"an image {width}x{height} is too elongated for Qwen-VL (aspect ratio above 200)")
    h = round(height / factor) * factor
    w = round(width / factor) * factor
    if h * w > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h = max(factor, math.floor(height / beta / factor) * factor)
        w = max(factor, math.floor(width / beta / factor) * factor)
    elif h * w < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h = math.ceil(height * beta / factor) * factor
        w = math.ceil(width * beta / factor) * factor
    return h, w


def fit_processor(img: Image.Image, factor: int = QWEN3_VL_FACTOR, min_pixels: int = QWEN3_VL_MIN_PIXELS,
                  max_pixels: int = QWEN3_VL_MAX_PIXELS) -> Image.Image:
    """``img`` (a PIL image, or a ComfyUI tensor image from :func:`~.images.prepare`) at the processor's size,
    resized with the processor's bicubic filter (unchanged when it is there)."""
    img = as_pil(img)
    h, w = processor_size(img.height, img.width, factor, min_pixels, max_pixels)
    return img if (w, h) == img.size else img.resize((w, h), Image.Resampling.BICUBIC)
