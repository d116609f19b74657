"""Mask operations: grow/shrink, feather, union, box NMS and the preview drawing."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from rationalrewards.grounding.detect import Detection, box_iou, build_caption, nms
from rationalrewards.grounding.masks import draw_preview, empty, feather, grow, refine, union
from rationalrewards.grounding.segment import BoxSegmenter, choose


def dot(h=9, w=11, y=4, x=5, batch=None) -> torch.Tensor:
    m = torch.zeros(h, w)
    m[y, x] = 1
    return m if batch is None else m.expand(batch, h, w).clone()


def test_grow_dilates_and_erodes_with_a_square():
    g = grow(dot(), 2)
    assert g.sum() == 25 and g[2:7, 3:8].all()
    assert torch.equal(grow(g, -2), dot())                    # erosion undoes it
    assert grow(dot(), -1).sum() == 0
    full = torch.ones(5, 5)
    assert torch.equal(grow(full, -2), full)                  # the border counts as inside: edge regions stay
    assert torch.equal(grow(dot(), 0), dot())


def test_feather_softens_without_moving_mass_or_leaving_0_1():
    f = feather(grow(dot(21, 21, 10, 10), 3), 4)
    assert f.shape == (21, 21) and f.dtype == torch.float32
    assert 0.0 <= float(f.min()) and float(f.max()) <= 1.0
    assert 0 < float(f[10, 5]) < float(f[10, 7]) < float(f[10, 10])   # a soft edge across the old border
    assert float(f[10, 0]) == 0.0
    assert float(f.sum()) == pytest.approx(49.0, rel=0.05)
    assert torch.allclose(feather(torch.ones(3, 4), 6), torch.ones(3, 4))


@pytest.mark.parametrize("shape", [(9, 11), (2, 9, 11), (2, 3, 9, 11)])
def test_refine_keeps_any_leading_shape(shape):
    m = torch.zeros(shape)
    m[..., 4, 5] = 1
    out = refine(m, 2, 2)
    assert out.shape == shape and out.dtype == torch.float32
    assert refine(torch.zeros((0, 9, 11)), 3, 3).shape == (0, 9, 11)


def test_union_and_empty():
    a, b = dot(y=1), dot(y=7)
    assert torch.equal(union(torch.stack([a, b])), a + b)
    e = empty(6, 8, 3)
    assert e.shape == (3, 6, 8) and e.dtype == torch.float32 and e.sum() == 0


def test_nms_and_iou():
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]], dtype=torch.float32)
    assert box_iou(boxes, boxes).diagonal().allclose(torch.ones(3))
    assert nms(boxes, torch.tensor([0.5, 0.9, 0.1])) == [1, 2]
    assert nms(boxes, torch.tensor([0.9, 0.5, 0.1]), iou=0.95) == [0, 1, 2]


def test_caption_spans_point_at_each_phrase():
    caption, spans = build_caption(["left hand", "sign text"])
    assert caption == "left hand . sign text ."
    assert [caption[s:e] for s, e in spans] == ["left hand", "sign text"]


def test_box_segmenter_fills_clipped_rectangles_even_for_degenerate_boxes():
    img = Image.new("RGB", (20, 10))
    m = BoxSegmenter().segment(img, [(2, 3, 6, 8), (15.5, -4, 40, 30), (20, 10, 20, 10)])
    assert m.shape == (3, 10, 20) and m.dtype == bool
    assert m[0].sum() == 4 * 5 and m[0][3:8, 2:6].all()
    assert m[1][:, 15:].all() and m[1].sum() == 5 * 10
    assert m[2].sum() == 1                                   # a zero-area box at the corner still marks a pixel
    assert BoxSegmenter().segment(img, []).shape == (0, 10, 20)


def test_choose_picks_by_score_or_area():
    cands = torch.zeros(1, 3, 4, 4, dtype=torch.bool)
    cands[0, 0, :1], cands[0, 1, :3], cands[0, 2, :2] = True, True, True
    scores = torch.tensor([[0.1, 0.2, 0.9]])
    assert choose(cands, scores, "best")[0].sum() == 8
    assert choose(cands, scores, "largest")[0].sum() == 12
    assert choose(cands, scores, "smallest")[0].sum() == 4
    assert choose(cands, scores, "single")[0].sum() == 4
    assert choose(cands[:, :1], scores[:, :1], "largest").shape == (1, 4, 4)


def test_preview_tints_masks_and_draws_boxes():
    img = Image.new("RGB", (64, 48), (0, 0, 0))
    det = Detection("left hand", 1, (8.0, 8.0, 40.0, 30.0), 0.8, 0.7)
    mask = np.zeros((1, 48, 64), dtype=bool)
    mask[0, 23:28, 20:30] = True                                  # below the label
    out = np.asarray(draw_preview(img, [det], mask, n_phrases=2))
    assert out.shape == (48, 64, 3)
    assert out[25, 25].sum() > 0 and out[40, 60].sum() == 0        # tinted inside the mask, untouched far away
    assert out[29, 20].sum() > 0                                    # box outline
    assert np.asarray(draw_preview(img, [], None, 0)).sum() == 0


class _PlacedDetector:
    """A detector that finds each phrase where the test put it (and nothing for the others)."""
    modules: list = []

    def __init__(self, boxes: dict[str, list]):
        self.boxes = boxes

    def detect(self, image, phrases, box_threshold=0.3, text_threshold=0.25, max_regions=None, resolution=None,
               device=None):
        from rationalrewards.grounding.detect import DetectionResult
        dets = [Detection(p, i, tuple(map(float, b)), 0.9, 0.8) for i, p in enumerate(phrases)
                for b in self.boxes.get(p, [])]
        return DetectionResult(dets, list(phrases))


def test_each_phrase_mask_covers_its_own_detections_and_not_the_others():
    """per_phrase: phrase k's mask is phrase k's regions only (a union handed to every phrase fails here);
    a phrase found nowhere gets an empty mask; the union is all of them."""
    from rationalrewards.grounding.localise import GroundingModels, LocaliseOptions, localise_image
    hand, sign = (4, 4, 20, 20), (40, 30, 60, 44)
    models = GroundingModels(_PlacedDetector({"left hand": [hand], "sign": [sign, (40, 4, 48, 12)]}))
    loc = localise_image(models, Image.new("RGB", (64, 48)), ["left hand", "sign", "sky"],
                         LocaliseOptions(grow=0, feather=0, max_regions=4))
    m = loc.phrase_masks
    assert m.shape == (3, 48, 64)
    assert m[0, 10, 10] == 1 and m[0, 35, 50] == 0 and m[0, 8, 44] == 0            # hand: its box only
    assert m[1, 35, 50] == 1 and m[1, 8, 44] == 1 and m[1, 10, 10] == 0            # sign: both of its boxes
    assert m[2].sum() == 0 and loc.to_dict()["not_found"] == ["sky"]               # no detection: empty
    assert torch.equal(loc.union, m.amax(0)) and int(m[0].sum()) == 16 * 16
