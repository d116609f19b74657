"""Image checks and preparation."""
from __future__ import annotations

import pytest
from PIL import Image

from rationalrewards.critic.images import MIN_SIDE, ImageError, fit_max_pixels, prepare, to_rgb


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
