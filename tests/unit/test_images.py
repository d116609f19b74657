"""Image checks and preparation, and the pack's one float -> 8-bit conversion."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rationalrewards.critic.images import (MIN_SIDE, ImageError, TensorImage, fit_max_pixels, fitted_size,
                                           from_unit_floats, prepare, to_rgb, to_uint8, unit_levels)

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("size", [(1, 1), (15, 64), (64, 8)])
def test_tiny_image_is_refused_naming_its_size(size):
    with pytest.raises(ImageError) as e:
        to_rgb(Image.new("RGB", size), "source image")
    msg = str(e.value)
    assert f"{size[0]}x{size[1]}" in msg
    assert "source image" in msg
    assert f"{MIN_SIDE}x{MIN_SIDE}" in msg
    assert isinstance(e.value, ValueError)


def test_min_side_is_accepted():
    assert to_rgb(Image.new("RGB", (MIN_SIDE, MIN_SIDE))).size == (MIN_SIDE, MIN_SIDE)


def test_rgba_flattened_on_white():
    im = Image.new("RGBA", (20, 20), (255, 0, 0, 0))          # fully transparent red
    im.putpixel((0, 0), (0, 0, 255, 255))                      # one opaque blue pixel
    im.putpixel((1, 0), (0, 0, 0, 128))                        # half-transparent black
    out = to_rgb(im)
    assert out.mode == "RGB" and out.size == (20, 20)
    assert out.getpixel((5, 5)) == (255, 255, 255)
    assert out.getpixel((0, 0)) == (0, 0, 255)
    r, g, b = out.getpixel((1, 0))
    assert r == g == b and 120 <= r <= 135


@pytest.mark.parametrize("mode, value, expected", [("L", 77, (77, 77, 77)), ("LA", (77, 0), (255, 255, 255)),
                                                   ("1", 1, (255, 255, 255)), ("CMYK", (0, 0, 0, 0), (255, 255, 255))])
def test_other_modes_become_rgb(mode, value, expected):
    out = to_rgb(Image.new(mode, (20, 20), value))
    assert out.mode == "RGB"
    assert out.getpixel((3, 3)) == expected


def test_palette_with_transparency_is_flattened():
    im = Image.new("P", (20, 20), 0)
    im.putpalette([255, 0, 0] + [0, 0, 0] * 255)
    im.info["transparency"] = 0
    out = to_rgb(im)
    assert out.mode == "RGB" and out.getpixel((0, 0)) == (255, 255, 255)


def test_rgb_is_unchanged():
    im = Image.new("RGB", (20, 20), (1, 2, 3))
    out = to_rgb(im)
    assert out.mode == "RGB" and out.tobytes() == im.tobytes()


@pytest.mark.parametrize("size, max_pixels", [((1000, 500), 100_000), ((640, 480), 50_000), ((300, 2000), 60_000),
                                              ((4096, 4096), 512 * 512)])
def test_fit_max_pixels_downscales_keeping_aspect(size, max_pixels):
    out = fit_max_pixels(Image.new("RGB", size), max_pixels)
    w, h = out.size
    assert w * h <= max_pixels
    assert w < size[0] and h < size[1]
    assert abs(w / h - size[0] / size[1]) / (size[0] / size[1]) < 0.02
    assert w * h >= 0.95 * max_pixels     # not needlessly small


@pytest.mark.parametrize("max_pixels", [None, 0, 64 * 64, 10**9])
def test_fit_max_pixels_never_upscales(max_pixels):
    im = Image.new("RGB", (64, 64))
    assert fit_max_pixels(im, max_pixels).size == (64, 64)


def test_prepare_converts_then_fits():
    out = prepare(Image.new("RGBA", (400, 200), (0, 0, 0, 0)), max_pixels=20_000)
    assert out.mode == "RGB"
    assert out.width * out.height <= 20_000
    assert out.getpixel((0, 0)) == (255, 255, 255)
    with pytest.raises(ImageError, match="edited image is 1x1"):
        prepare(Image.new("RGB", (1, 1)), what="edited image")


# --- the one float -> 8-bit conversion ------------------------------------------------------------------------

def halves() -> np.ndarray:
    """Floats whose x255 lands exactly on k + 0.5 for every k (float32 hits each one): the values where
    rounding half to even, rounding half up (+0.5 then truncate) and truncating all disagree."""
    x = ((np.arange(255, dtype=np.float64) + 0.5) / 255).astype(np.float32)
    assert np.array_equal(x * np.float32(255), np.arange(255) + 0.5)
    return x


def expected_levels(x: np.ndarray) -> np.ndarray:
    return np.round(np.clip(np.nan_to_num(x, nan=0.0), 0, 1) * np.float32(255)).astype(np.uint8)


def test_unit_levels_round_half_to_even_clip_and_zero_nan():
    x = np.concatenate([halves(), np.array([0, 1, -0.2, 1.7, np.nan, np.inf, -np.inf], np.float32)])
    got = to_uint8(x)
    assert got[:255].tolist() == [k if k % 2 == 0 else k + 1 for k in range(255)]
    assert got[255:].tolist() == [0, 255, 0, 255, 0, 255, 0]
    assert np.array_equal(got, expected_levels(x))
    assert np.array_equal(to_uint8(torch.from_numpy(x)), got)                 # torch and numpy alike
    assert np.array_equal(unit_levels(torch.from_numpy(x)).numpy(), got.astype(np.float32))
    assert np.array_equal(to_uint8(torch.from_numpy(x).to(torch.bfloat16)),
                          to_uint8(torch.from_numpy(x).to(torch.bfloat16).float()))


def half_image(channels: int = 3) -> torch.Tensor:
    """A ComfyUI IMAGE [1, 18, 16, C] holding every half value (and a few outside [0, 1])."""
    x = np.resize(np.concatenate([halves(), np.array([-1, 2, np.nan], np.float32)]), 18 * 16 * channels)
    return torch.from_numpy(x.reshape(1, 18, 16, channels))


def test_every_tensor_to_pil_path_is_the_one_conversion():
    """The critic's conversion, the reward's (NCHW and NHWC arrays and tensors) and a TensorImage's PIL
    form give the same pixels: a second conversion or another rounding would break this."""
    from rationalrewards.toolkit.reward import to_pil_images

    batch = half_image()
    want = expected_levels(batch.numpy())[0]
    [pil] = from_unit_floats(batch)
    assert np.array_equal(np.asarray(pil), want)
    for held in (batch.permute(0, 3, 1, 2), batch.permute(0, 3, 1, 2).numpy(), batch.numpy(), [batch[0].numpy()]):
        assert np.array_equal(np.asarray(to_pil_images(held)[0]), want)
    assert np.array_equal(np.asarray(TensorImage(batch[0]).to_pil()), want)
    assert np.array_equal(np.asarray(prepare(batch[0]).to_pil()), want)


def test_the_node_side_uses_the_core_conversion(pack):
    from tests.comfy_server import comfy_dir, missing_comfyui
    if not (comfy_dir() / "comfy" / "model_management.py").is_file():
        missing_comfyui(f"no ComfyUI tree at {comfy_dir()} (scripts/setup_env.sh builds it)")
    if str(comfy_dir()) not in sys.path:
        sys.path.append(str(comfy_dir()))          # appended: ComfyUI's top-level names never shadow ours
    import comfy.cli_args
    comfy.cli_args.args.cpu = True
    common = pack("nodes.common")
    batch = half_image()
    [pil] = common.to_pil_list(batch, "RR test")
    assert np.array_equal(np.asarray(pil), expected_levels(batch.numpy())[0])
    [tensor] = common.critic_images(batch, "RR test")
    assert tensor.shape == (18, 16, 3) and tensor.data_ptr() == batch.data_ptr()    # no copy, no PIL


def test_only_the_core_multiplies_by_255():
    """Float -> 8-bit conversions live in critic/images.py alone (a ``* 255`` elsewhere is a second one;
    the mask overlay's HSV palette is colour arithmetic, not an image)."""
    pattern = re.compile(r"\*\s*255\b|\b255\.?0*\s*\*|\bmul_?\([^)]*\b255\b")
    assert all(pattern.search(s) for s in ("x * 255 + 0.5", "255.0 * x", "torch.mul(x, 255.0)", "t.mul_(255)"))
    files = [p for folder in ("models", "nodes", "bench") for p in (ROOT / folder).rglob("*.py")]
    hits = [f"{p.relative_to(ROOT)}:{n}" for p in files
            if p != ROOT / "models" / "critic" / "images.py"
            for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
            if pattern.search(line) and "colorsys" not in line]
    assert not hits, f"convert floats to 8 bits with rationalrewards.critic.images.to_uint8: {hits}"


# --- a ComfyUI tensor given to the critic -----------------------------------------------------------------

def test_prepare_keeps_a_tensor_and_fits_its_size():
    x = torch.rand(600, 1000, 3)
    img = prepare(x, max_pixels=100_000, what="image A")
    assert isinstance(img, TensorImage) and img.pixels.data_ptr() == x.data_ptr()
    assert img.source_size == (1000, 600) and img.size == fitted_size(1000, 600, 100_000)
    assert img.size == fit_max_pixels(Image.new("RGB", (1000, 600)), 100_000).size
    assert img.to_pil().size == img.size and img.to_pil().mode == "RGB"
    assert prepare(torch.rand(40, 30, 1)).to_pil().mode == "RGB"


def test_prepare_refuses_bad_tensors_and_flattens_rgba_on_white():
    with pytest.raises(ImageError, match="image A is 15x64"):
        prepare(torch.rand(64, 15, 3), what="image A")
    with pytest.raises(ImageError, match=r"\(H, W, C\)"):
        prepare(torch.rand(1, 64, 64, 3))
    with pytest.raises(ImageError, match="floats"):
        prepare(torch.zeros(64, 64, 3, dtype=torch.uint8))
    rgba = torch.zeros(32, 32, 4)                                     # fully transparent
    out = prepare(rgba)
    assert isinstance(out, Image.Image) and out.getpixel((3, 3)) == (255, 255, 255)


def test_a_server_receives_a_tensor_through_the_one_conversion_fitted():
    import base64
    import io

    from rationalrewards.backends.openai_server import image_data_url
    x = torch.rand(120, 200, 3, generator=torch.Generator().manual_seed(0))
    img = prepare(x, max_pixels=6000)
    sent = Image.open(io.BytesIO(base64.b64decode(image_data_url(img).split(",", 1)[1])))
    want = fit_max_pixels(from_unit_floats(x[None])[0], 6000)
    assert sent.size == img.size == want.size and sent.convert("RGB").tobytes() == want.tobytes()
