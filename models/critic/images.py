"""Image checks and preparation shared by every backend, and the pack's one float -> 8-bit conversion.

An image reaches the critic either as a PIL image (files: the CLI, the toolkit) or as a ComfyUI IMAGE
tensor (H, W, C floats in [0, 1]). A tensor is not turned into PIL on the way: :func:`prepare` wraps it
in a :class:`TensorImage`, and the in-process backend builds the model's pixel values from it in torch
(``backends/qwen_inputs.py``); a server backend asks it for the PIL image it uploads.

Every float -> 8-bit conversion in the pack goes through :func:`unit_levels` (clip to [0, 1], NaN as 0,
x255, round half to even), so a tensor seen through PIL and a tensor read by the torch path hold the
same 8-bit values.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Union

import numpy as np
from PIL import Image
from ..errors import RationalRewardsError

if TYPE_CHECKING:
    import torch

MIN_SIDE = 16


class ImageError(RationalRewardsError, ValueError):
    """An input image the critic cannot read; the message says what to change."""


def unit_levels(x: "torch.Tensor") -> "torch.Tensor":
    """The 8-bit levels (as float32, 0..255, whole numbers) of floats in [0, 1]: clipped, NaN as 0, rounded
    half to even. The one rounding of the pack (a new tensor; ``x`` is not changed)."""
    import torch

    return torch.mul(x.float(), 255.0).nan_to_num_(0.0).clamp_(0.0, 255.0).round_()


def to_uint8(batch: Any) -> np.ndarray:
    """``batch`` (a torch tensor or numpy array of floats in [0, 1], any shape) as uint8, by
    :func:`unit_levels`."""
    import torch

    if not isinstance(batch, torch.Tensor):
        batch = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
    # through numpy: its float -> uint8 cast is several times faster than torch's on the CPU
    return unit_levels(batch.detach().cpu()).numpy().astype(np.uint8)


def from_unit_floats(batch: Any) -> list[Image.Image]:
    """A batch [B,H,W,C] of floats in [0, 1] (C = 1, 3 or 4: greyscale, RGB, RGBA; a torch tensor or a
    numpy array) as PIL images: the pack's one tensor -> PIL conversion (:func:`to_uint8`)."""
    channels = batch.shape[-1]
    if channels not in (1, 3, 4) or len(batch.shape) != 4:
        raise ImageError(f"expected an image batch [B,H,W,C] with C = 1, 3 or 4; got shape {tuple(batch.shape)}")
    arr = to_uint8(batch)
    mode = {1: "L", 3: "RGB", 4: "RGBA"}[channels]
    return [Image.fromarray(a[..., 0] if channels == 1 else a, mode) for a in arr]


def to_rgb(img: Image.Image, what: str = "image") -> Image.Image:
    """RGB copy of ``img`` for the critic, which needs at least ``MIN_SIDE`` pixels a side."""
    _check_size(img.width, img.height, what)
    return flatten_rgb(img)


def _check_size(width: int, height: int, what: str) -> None:
    if width < MIN_SIDE or height < MIN_SIDE:
        raise ImageError(f"{what} is {width}x{height} pixels; the critic needs at least "
                         f"{MIN_SIDE}x{MIN_SIDE}. Upscale or crop it to a real image size first.")


def flatten_rgb(img: Image.Image) -> Image.Image:
    """RGB of ``img`` (any size): transparency is flattened onto white, greyscale is expanded."""
    if img.mode == "RGB":
        return img
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def fitted_size(width: int, height: int, max_pixels: int | None) -> tuple[int, int]:
    """(width, height) scaled down (never up) so that width*height <= max_pixels, keeping the aspect
    ratio (LLaMA-Factory's ``image_max_pixels`` rule, which the RationalRewards checkpoints were trained with)."""
    if not max_pixels or width * height <= max_pixels:
        return width, height
    scale = math.sqrt(max_pixels / (width * height))
    return max(MIN_SIDE, int(width * scale)), max(MIN_SIDE, int(height * scale))


def fit_max_pixels(img: Image.Image, max_pixels: int | None) -> Image.Image:
    """Downscale (never upscale) so that width*height <= max_pixels, keeping the aspect ratio."""
    size = fitted_size(img.width, img.height, max_pixels)
    return img if size == img.size else img.resize(size, Image.Resampling.BICUBIC)


@dataclass(frozen=True, eq=False)
class TensorImage:
    """A ComfyUI image on its way to the critic, kept as the tensor it came as (no copy, no PIL).

    ``pixels``: (H, W, 3) or (H, W, 1) floats in [0, 1]. ``max_pixels``: the critic's pixel budget; the
    image is seen at :attr:`size` (the fitted size; the in-process backend then resizes once, straight to
    its processor's grid). :meth:`to_pil` is the same image as a PIL image at that size (what a server
    receives, and what the processor path reads)."""
    pixels: "torch.Tensor"
    max_pixels: int | None = None

    @property
    def source_size(self) -> tuple[int, int]:
        """(width, height) of the tensor as given."""
        return int(self.pixels.shape[1]), int(self.pixels.shape[0])

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) after the ``max_pixels`` fit, like ``PIL.Image.size``."""
        return fitted_size(*self.source_size, self.max_pixels)

    @property
    def width(self) -> int:
        return self.size[0]

    @property
    def height(self) -> int:
        return self.size[1]

    def to_pil(self) -> Image.Image:
        """RGB PIL image at :attr:`size`: the one conversion, then the PIL fit (as before the torch path)."""
        return fit_max_pixels(flatten_rgb(from_unit_floats(self.pixels[None])[0]), self.max_pixels)


CriticInput = Union[Image.Image, TensorImage]   # an image inside a chat request
ImageInput = Union[Image.Image, "torch.Tensor"]  # what callers hand the critic: PIL, or a ComfyUI (H, W, C) tensor


def as_pil(img: CriticInput) -> Image.Image:
    """The PIL form of an image in a chat request (for backends that send or process PIL images)."""
    return img.to_pil() if isinstance(img, TensorImage) else img


def is_tensor(img: Any) -> bool:
    """A torch tensor (checked without importing torch)."""
    return hasattr(img, "detach") and hasattr(img, "shape")


def prepare(img: ImageInput, max_pixels: int | None = None,
            what: str = "image") -> CriticInput:
    """What the critic is given for one image: a PIL image becomes RGB and fits ``max_pixels``; a ComfyUI
    image tensor (H, W, C) is checked and kept as a :class:`TensorImage` (RGBA tensors are flattened onto
    white through PIL, like PIL images)."""
    if not is_tensor(img):
        return fit_max_pixels(to_rgb(img, what), max_pixels)
    if img.ndim != 3 or img.shape[-1] not in (1, 3, 4):
        raise ImageError(f"{what} must be one image (H, W, C) with 1, 3 or 4 channels; got shape "
                         f"{tuple(img.shape)}")
    _check_size(int(img.shape[1]), int(img.shape[0]), what)
    if img.shape[-1] == 4:
        return prepare(from_unit_floats(img[None])[0], max_pixels, what)
    if not img.is_floating_point():
        raise ImageError(f"{what} must hold floats in [0, 1] (a ComfyUI IMAGE); got {img.dtype}")
    return TensorImage(img.detach(), max_pixels)
