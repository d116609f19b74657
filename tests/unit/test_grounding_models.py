"""Grounding models through the real loaders: tiny random GroundingDINO (transformers folder and original .pth),
SAM, SAM 2 and Meta's SAM .pth, built offline; the original-checkpoint key mapping; detection, segmentation
and whole-image localisation (shapes, dtypes, empty results, RGBA/greyscale, batches of phrases)."""
from __future__ import annotations

import argparse
import fractions
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rationalrewards.grounding import convert_groundingdino as C
from rationalrewards.grounding import loader as L
from rationalrewards.grounding.detect import GroundingDetector
from rationalrewards.grounding.localise import GroundingModels, LocaliseOptions, localise_image, preview
from rationalrewards.grounding.segment import BoxSegmenter, HFSegmenter, MetaSamError, MetaSegmenter, meta_sam_config
from tests.fixtures import tiny_grounding as T

PHRASES = ["left hand", "sign text", "face"]


@pytest.fixture(scope="module")
def models_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("grounding_models")
    T.build_all(root)
    return root


@pytest.fixture(scope="module")
def dirs(models_root):
    return {"det": [models_root / T.GDINO_FOLDER], "seg": [models_root / T.SAM_FOLDER]}


@pytest.fixture(scope="module")
def hf_detector(dirs) -> GroundingDetector:
    return L.load_detector(T.GDINO_NAME, dirs["det"])


@pytest.fixture(scope="module")
def segmenters(dirs) -> dict:
    return {name: L.load_segmenter(name, dirs["seg"]) for name in (T.SAM_NAME, T.SAM2_NAME, T.SAM_PTH, L.NO_SEGMENTER)}


def image(w=96, h=64, mode="RGB") -> Image.Image:
    arr = np.zeros((h, w, 3), dtype=np.uint8)
    arr[:, : w // 2] = (200, 40, 40)
    arr[h // 3:, w // 2:] = (40, 160, 220)
    img = Image.fromarray(arr)
    if mode == "RGBA":
        img = img.convert("RGBA")
        img.putalpha(Image.new("L", img.size, 128))
    return img.convert(mode) if mode not in ("RGB", "RGBA") else img


# --- loaders --------------------------------------------------------------------------------------------

def test_listing_shows_folders_and_checkpoints_but_not_the_tokenizer_folder(dirs):
    assert L.list_local(dirs["det"], "detector") == [T.GDINO_NAME, T.GDINO_PTH]
    assert L.list_local(dirs["seg"], "segmenter") == [T.SAM_NAME, T.SAM2_NAME, T.SAM_PTH]
    assert L.list_local(["/nonexistent"], "detector") == []


def test_loaders_build_the_right_kinds(hf_detector, segmenters):
    assert type(hf_detector.model).__name__ == "GroundingDinoForObjectDetection"
    assert hf_detector.max_tokens == 256
    assert {k: v.kind for k, v in segmenters.items()} == {
        T.SAM_NAME: "sam", T.SAM2_NAME: "sam2", T.SAM_PTH: "sam-pth", L.NO_SEGMENTER: "boxes"}
    assert isinstance(segmenters[T.SAM_PTH], MetaSegmenter) and isinstance(segmenters[T.SAM_NAME], HFSegmenter)
    assert segmenters[L.NO_SEGMENTER].modules == []


def test_missing_models_say_where_to_put_them_and_never_download_silently(dirs, tmp_path):
    with pytest.raises(L.GroundingModelNotFound, match="hf download IDEA-Research/grounding-dino-tiny"):
        L.load_detector("IDEA-Research/grounding-dino-tiny", [tmp_path])
    with pytest.raises(L.GroundingModelNotFound, match="not found"):
        L.load_segmenter("nope.pth", dirs["seg"])
    with pytest.raises(L.GroundingModelNotFound, match="no GroundingDINO model given"):
        L.load_detector("", dirs["det"])


def test_hub_ids_are_fetched_into_the_first_folder_only_when_allowed(monkeypatch, tmp_path, models_root):
    calls = []

    def fake_download(repo_id, target, progress=None):
        calls.append((repo_id, target))
        __import__("shutil").copytree(models_root / T.SAM_FOLDER / T.SAM_NAME, target)
        return target

    from rationalrewards.runtime import checkpoints as core_loader    # grounding models resolve through the core's loader
    monkeypatch.setattr(core_loader, "download", fake_download)
    first, second = tmp_path / "a", tmp_path / "b"
    with pytest.raises(L.GroundingModelNotFound):
        L.load_segmenter("facebook/sam-vit-base", [first, second])
    assert calls == []
    seg = L.load_segmenter("facebook/sam-vit-base", [first, second], allow_download=True)
    assert calls == [("facebook/sam-vit-base", first / "sam-vit-base")] and seg.kind == "sam"
    L.load_segmenter("facebook/sam-vit-base", [first, second], allow_download=True)   # now on disk: no second fetch
    assert len(calls) == 1


def test_bert_tokenizer_is_fetched_only_when_allowed(monkeypatch, tmp_path):
    import huggingface_hub
    fetched = []

    def fake_snapshot(repo_id, allow_patterns=None, local_files_only=False, local_dir=None, **kw):
        if local_files_only:
            raise FileNotFoundError("not cached")
        fetched.append((repo_id, sorted(allow_patterns)))
        T.build_bert_vocab_folder(Path(local_dir))
        return local_dir

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot)
    with pytest.raises(L.GroundingModelNotFound, match="download if missing"):
        L.find_bert_tokenizer([tmp_path])
    tok = L.find_bert_tokenizer([tmp_path], allow_download=True)
    assert fetched == [("google-bert/bert-base-uncased", ["tokenizer.json", "tokenizer_config.json", "vocab.txt"])]
    assert (tmp_path / "bert-base-uncased" / "vocab.txt").is_file() and len(tok) == len(T.bert_vocab())


def test_a_sam_folder_is_not_a_detector_and_vice_versa(dirs, models_root):
    with pytest.raises(L.GroundingLoadError, match="not GroundingDINO"):
        L.load_detector(str(models_root / T.SAM_FOLDER / T.SAM_NAME), dirs["det"])
    with pytest.raises(L.GroundingLoadError, match="expected SAM"):
        L.load_segmenter(str(models_root / T.GDINO_FOLDER / T.GDINO_NAME), dirs["seg"])


def test_original_checkpoint_needs_a_local_tokenizer(dirs, models_root, tmp_path, monkeypatch):
    lonely = tmp_path / "gd"
    lonely.mkdir()
    (lonely / T.GDINO_PTH).write_bytes((models_root / T.GDINO_FOLDER / T.GDINO_PTH).read_bytes())
    monkeypatch.setattr(L, "BERT_HUB_IDS", ("rr-test/not-in-any-cache",))    # the HF cache cannot help either
    with pytest.raises(L.GroundingModelNotFound, match="bert-base-uncased"):
        L.load_detector(T.GDINO_PTH, [lonely])
    det = L.load_detector(T.GDINO_PTH, [lonely], tokenizer_dirs=dirs["det"])   # vocab.txt only: works
    assert len(det.tokenizer) == len(T.bert_vocab())
    assert det.tokenizer.convert_tokens_to_ids(["[CLS]", ".", "hand"]) == [101, 1012, T.bert_vocab().index("hand")]


def test_pickles_with_code_are_refused(tmp_path, models_root):
    sd = torch.load(models_root / T.GDINO_FOLDER / T.GDINO_PTH, weights_only=True)
    torch.save({"model": sd["model"], "extra": fractions.Fraction(1, 3)}, tmp_path / "with_object.pth")
    with pytest.raises(L.GroundingLoadError, match="weights_only=True"):
        L.load_detector("with_object.pth", [tmp_path])
    torch.save({"model": {"foo.weight": torch.zeros(2)}}, tmp_path / "not_gdino.pth")
    with pytest.raises(L.GroundingLoadError, match="not an original GroundingDINO"):
        L.load_detector("not_gdino.pth", [tmp_path])


# --- the original-checkpoint key mapping -----------------------------------------------------------------

# Parameter names of groundingdino_swint_ogc.pth, written from IDEA-Research/GroundingDINO's modules
# (groundingdino.py, transformer.py, fuse_modules.py, backbone/swin_transformer.py, bertwarper.py).
_N, _P = r"\d+", r"(weight|bias)"
REAL_KEY_PATTERNS = [rf"^{p}$" for p in (
    rf"backbone\.0\.patch_embed\.(proj|norm)\.{_P}",
    rf"backbone\.0\.layers\.{_N}\.blocks\.{_N}\.(norm1|norm2|attn\.qkv|attn\.proj|mlp\.fc1|mlp\.fc2)\.{_P}",
    rf"backbone\.0\.layers\.{_N}\.blocks\.{_N}\.attn\.relative_position_(bias_table|index)",
    rf"backbone\.0\.layers\.{_N}\.downsample\.(reduction\.weight|norm\.{_P})",
    rf"backbone\.0\.norm[123]\.{_P}",
    r"bert\.embeddings\.(word_embeddings|position_embeddings|token_type_embeddings)\.weight",
    rf"bert\.embeddings\.(LayerNorm\.{_P}|position_ids)",
    rf"bert\.encoder\.layer\.{_N}\.attention\.self\.(query|key|value)\.{_P}",
    rf"bert\.encoder\.layer\.{_N}\.(attention\.output\.dense|attention\.output\.LayerNorm|intermediate\.dense|"
    rf"output\.dense|output\.LayerNorm)\.{_P}",
    rf"bert\.pooler\.dense\.{_P}",
    rf"feat_map\.{_P}", rf"input_proj\.{_N}\.[01]\.{_P}",
    r"transformer\.level_embed", r"transformer\.tgt_embed\.weight", rf"transformer\.enc_output(_norm)?\.{_P}",
    rf"transformer\.enc_out_bbox_embed\.layers\.[012]\.{_P}",
    rf"transformer\.encoder\.layers\.{_N}\.self_attn\.(sampling_offsets|attention_weights|value_proj|output_proj)\.{_P}",
    rf"transformer\.encoder\.layers\.{_N}\.(norm1|norm2|linear1|linear2)\.{_P}",
    rf"transformer\.encoder\.text_layers\.{_N}\.self_attn\.(in_proj_{_P}|out_proj\.{_P})",
    rf"transformer\.encoder\.text_layers\.{_N}\.(linear1|linear2|norm1|norm2)\.{_P}",
    rf"transformer\.encoder\.fusion_layers\.{_N}\.gamma_[vl]",
    rf"transformer\.encoder\.fusion_layers\.{_N}\.layer_norm_[vl]\.{_P}",
    rf"transformer\.encoder\.fusion_layers\.{_N}\.attn\.(v_proj|l_proj|values_v_proj|values_l_proj|out_v_proj|"
    rf"out_l_proj)\.{_P}",
    rf"transformer\.decoder\.layers\.{_N}\.cross_attn\.(sampling_offsets|attention_weights|value_proj|output_proj)\.{_P}",
    rf"transformer\.decoder\.layers\.{_N}\.(norm1|norm2|norm3|catext_norm|linear1|linear2)\.{_P}",
    rf"transformer\.decoder\.layers\.{_N}\.(ca_text|self_attn)\.(in_proj_{_P}|out_proj\.{_P})",
    rf"transformer\.decoder\.norm\.{_P}", rf"transformer\.decoder\.ref_point_head\.layers\.[01]\.{_P}",
    rf"(transformer\.decoder\.)?bbox_embed\.{_N}\.layers\.[012]\.{_P}",
)]


@pytest.fixture(scope="module")
def original_sd(models_root) -> dict:
    return C.unwrap(torch.load(models_root / T.GDINO_FOLDER / T.GDINO_PTH, weights_only=True))


def test_the_mapping_writes_exactly_the_real_checkpoint_key_names(original_sd):
    unmatched = [k for k in original_sd if not any(re.match(p, k) for p in REAL_KEY_PATTERNS)]
    assert unmatched == []
    unused = [p for p in REAL_KEY_PATTERNS if not any(re.match(p, k) for k in original_sd)]
    assert unused == []                                      # and every kind of real key is produced
    d, c = 32, 8
    assert original_sd["transformer.decoder.layers.0.self_attn.in_proj_weight"].shape == (3 * d, d)
    assert original_sd["backbone.0.layers.0.blocks.0.attn.qkv.weight"].shape == (3 * c, c)
    assert torch.equal(original_sd["bbox_embed.1.layers.0.weight"], original_sd["bbox_embed.0.layers.0.weight"])


def test_fused_qkv_keeps_nn_multiheadattention_semantics(original_sd, hf_detector):
    """The original runs torch's nn.MultiheadAttention on in_proj_weight; the split must agree with it."""
    prefix = "transformer.decoder.layers.0.self_attn."
    mha = torch.nn.MultiheadAttention(32, 2, batch_first=True)
    mha.load_state_dict({"in_proj_weight": original_sd[prefix + "in_proj_weight"],
                         "in_proj_bias": original_sd[prefix + "in_proj_bias"],
                         "out_proj.weight": original_sd[prefix + "out_proj.weight"],
                         "out_proj.bias": original_sd[prefix + "out_proj.bias"]})
    hf = hf_detector.model.model.decoder.layers[0].self_attn
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 5, 32, generator=g) for _ in range(3))
    with torch.no_grad():
        ours = hf(q, k, v)[0]
        theirs = mha(q, k, v, need_weights=False)[0]
    assert torch.allclose(ours, theirs, atol=1e-5)


def test_converted_checkpoint_gives_the_same_outputs_as_its_source(dirs, hf_detector, original_sd):
    converted = L.load_detector(T.GDINO_PTH, dirs["det"])
    ref_cfg, cfg = hf_detector.model.config, converted.model.config
    for key in ("d_model", "num_queries", "encoder_layers", "decoder_layers", "encoder_ffn_dim", "decoder_ffn_dim",
                "encoder_attention_heads", "encoder_n_points", "decoder_n_points", "num_feature_levels"):
        assert getattr(cfg, key) == getattr(ref_cfg, key), key
    assert cfg.backbone_config.num_heads == ref_cfg.backbone_config.num_heads
    assert cfg.backbone_config.window_size == ref_cfg.backbone_config.window_size
    assert cfg.text_config.vocab_size == ref_cfg.text_config.vocab_size
    inputs, _ = hf_detector._inputs(image(), "left hand . sign text .", 128)
    with torch.no_grad():
        a, b = hf_detector.model(**inputs), converted.model(**inputs)
    finite = torch.isfinite(a.logits)
    assert torch.equal(finite, torch.isfinite(b.logits))
    assert torch.allclose(a.logits[finite], b.logits[finite], atol=1e-5)
    assert torch.allclose(a.pred_boxes, b.pred_boxes, atol=1e-6)
    ra = hf_detector.detect(image(), PHRASES, 0.0, 0.0, resolution=128)
    rb = converted.detect(image(), PHRASES, 0.0, 0.0, resolution=128)
    assert [(d.phrase, d.box) for d in ra.detections] == [(d.phrase, d.box) for d in rb.detections]


def test_swin_position_index_is_right_whether_loaded_or_rebuilt(dirs, original_sd):
    """transformers 4.x loads Swin's relative_position_index from the checkpoint, 5.x rebuilds it: either
    way the converted detector holds the index Swin computes (a zero or missing buffer would not)."""
    converted = L.load_detector(T.GDINO_PTH, dirs["det"])
    window = converted.model.config.backbone_config.window_size
    buffers = {n: b for n, b in converted.model.named_buffers() if n.endswith("relative_position_index")}
    assert buffers and all(torch.equal(b.cpu().flatten(), T.swin_position_index(window).flatten())   # 5.x: flat
                           for b in buffers.values())
    assert torch.equal(original_sd["backbone.0.layers.0.blocks.0.attn.relative_position_index"],
                       T.swin_position_index(window))


def test_conversion_reports_leftovers_and_inverse_is_complete(original_sd, hf_detector):
    conv = C.original_to_hub(dict(original_sd, **{"transformer.mystery.weight": torch.zeros(1)}))
    assert conv.unexpected == ["transformer.mystery.weight"]
    assert any(k.startswith("bert.pooler.") for k in conv.dropped)
    assert not any(k.endswith("relative_position_index") for k in conv.dropped + conv.unexpected)
    assert any(k.endswith("attention.self.relative_position_index") for k in conv.state_dict)
    with pytest.raises(C.ConversionError, match="mystery"):
        C.load_original({"model": dict(original_sd, **{"transformer.mystery.weight": torch.zeros(1)})})
    broken = {k: v for k, v in original_sd.items() if not k.startswith("transformer.decoder.layers.1.")}
    with pytest.raises(C.ConversionError, match="do not fit"):
        C.load_original({k: v for k, v in broken.items()}, config=C.infer_config(original_sd))
    with pytest.raises(KeyError, match="no original-format name"):
        C.hub_to_original({"model.something_new.weight": torch.zeros(1)})


# --- detection ------------------------------------------------------------------------------------------

def test_detections_carry_input_phrases_and_boxes_inside_the_image(hf_detector):
    r = hf_detector.detect(image(), PHRASES, 0.0, 0.0, max_regions=50)
    assert r.detections and r.phrases == PHRASES and not r.warnings
    for d in r.detections:
        assert d.phrase == PHRASES[d.phrase_index]
        x0, y0, x1, y1 = d.box
        assert 0 <= x0 <= x1 <= 96 and 0 <= y0 <= y1 <= 64
        assert 0.0 <= d.phrase_score <= d.score <= 1.0
    assert [d.score for d in r.detections] == sorted((d.score for d in r.detections), reverse=True)


def test_thresholds_and_max_regions_narrow_the_result(hf_detector):
    every = hf_detector.detect(image(), PHRASES, 0.0, 0.0, max_regions=50).detections
    mid = sorted(d.score for d in every)[len(every) // 2]
    some = hf_detector.detect(image(), PHRASES, mid, 0.0, max_regions=50).detections
    assert 0 < len(some) < len(every) and all(d.score > mid for d in some)
    assert len(hf_detector.detect(image(), PHRASES, 0.0, 0.0, max_regions=2).detections) == 2
    assert hf_detector.detect(image(), PHRASES, 1.0, 0.0).detections == []
    strict = hf_detector.detect(image(), PHRASES, 0.0, 0.99, max_regions=50).detections
    assert all(d.phrase_score >= 0.99 for d in strict)


def test_phrases_with_punctuation_nothing_or_too_many(hf_detector):
    assert hf_detector.detect(image(), [], 0.0, 0.0).detections == []
    r = hf_detector.detect(image(), ["car's rear-wheel"], 0.0, 0.0)
    assert r.detections and {d.phrase for d in r.detections} == {"car's rear-wheel"}
    many = [f"hand {i}" for i in range(120)]                  # ~360 tokens > 256
    r = hf_detector.detect(image(), many, 0.0, 0.0)
    assert r.warnings and "did not fit" in r.warnings[0]
    assert 0 < len(r.phrases) < len(many) and r.phrases == many[:len(r.phrases)]


# --- segmentation ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", [T.SAM_NAME, T.SAM2_NAME, T.SAM_PTH, L.NO_SEGMENTER])
@pytest.mark.parametrize("multimask", ["single", "best", "largest", "smallest"])
def test_every_segmenter_gives_one_image_sized_bool_mask_per_box(segmenters, name, multimask):
    seg = segmenters[name]
    boxes = [(4.0, 4.0, 40.0, 30.0), (50.0, 20.0, 90.0, 60.0), (0.0, 0.0, 96.0, 64.0)]
    masks = seg.segment(image(96, 64), boxes, multimask)
    assert masks.shape == (3, 64, 96) and masks.dtype == bool
    assert seg.segment(image(96, 64), [], multimask).shape == (0, 64, 96)


@pytest.mark.parametrize("name", [T.SAM_NAME, T.SAM_PTH])
def test_largest_candidate_is_never_smaller_than_the_smallest(segmenters, name):
    box = [(10.0, 10.0, 70.0, 50.0)]
    big = segmenters[name].segment(image(), box, "largest").sum()
    small = segmenters[name].segment(image(), box, "smallest").sum()
    assert big >= small


def test_meta_sam_shape_is_read_from_the_weights(models_root):
    sd = torch.load(models_root / T.SAM_FOLDER / T.SAM_PTH, weights_only=True)
    c = meta_sam_config(sd)
    assert (c["img_size"], c["embed_dim"], c["depth"], c["num_heads"], c["window_size"], c["global_attn_indexes"]) == \
        (64, 32, 2, 2, 2, [1])
    assert (c["transformer_dim"], c["mask_in_chans"], c["num_multimask_outputs"], c["iou_head_hidden_dim"]) == (16, 4, 3, 16)
    with pytest.raises(MetaSamError, match="SAM-HQ"):
        meta_sam_config(dict(sd, **{"mask_decoder.hf_token.weight": torch.zeros(1, 16)}))
    with pytest.raises(MetaSamError, match="SAM 2"):
        meta_sam_config({"image_encoder.trunk.patch_embed.proj.weight": torch.zeros(1)})


# --- localisation ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L"])
def test_localise_any_image_mode_gives_masks_of_its_size(hf_detector, segmenters, mode):
    models = GroundingModels(hf_detector, segmenters[T.SAM_NAME])
    loc = localise_image(models, image(80, 48, mode), PHRASES, LocaliseOptions(0.0, 0.0, 3, grow=2, feather=2))
    assert loc.phrase_masks.shape == (3, 48, 80) and loc.union.shape == (48, 80)
    assert loc.phrase_masks.dtype == loc.union.dtype == torch.float32
    assert 0.0 <= float(loc.union.min()) and float(loc.union.max()) <= 1.0
    assert len(loc.detections) == 3 and loc.region_masks.shape == (3, 48, 80)
    assert preview(image(80, 48, mode), loc).size == (80, 48)


def test_union_is_the_max_of_the_phrase_masks_without_softening(hf_detector):
    loc = localise_image(GroundingModels(hf_detector), image(), PHRASES, LocaliseOptions(0.0, 0.0, 6, grow=0, feather=0))
    assert torch.equal(loc.union, loc.phrase_masks.amax(0))
    assert loc.union.sum() == torch.from_numpy(loc.region_masks.any(0)).sum()
    for i, p in enumerate(PHRASES):
        if p not in {d.phrase for d in loc.detections}:
            assert loc.phrase_masks[i].sum() == 0


def test_nothing_found_or_no_phrases_gives_zero_masks_of_the_image_size(hf_detector):
    models = GroundingModels(hf_detector, BoxSegmenter())
    loc = localise_image(models, image(70, 30), PHRASES, LocaliseOptions(box_threshold=1.0))
    assert loc.detections == [] and loc.union.shape == (30, 70) and loc.union.sum() == 0
    assert loc.phrase_masks.shape == (3, 30, 70) and loc.phrase_masks.sum() == 0
    assert "nothing found" in loc.warnings[-1] and loc.to_dict()["not_found"] == PHRASES
    none = localise_image(models, image(70, 30), ["", ""], LocaliseOptions(0.0, 0.0))
    assert none.phrases == [] and none.phrase_masks.shape == (0, 30, 70) and none.union.shape == (30, 70)


def test_placed_moves_every_model_and_always_moves_it_back():
    moves = []

    class Spy(torch.nn.Module):
        def to(self, *args, **kwargs):
            moves.append(str(args[0]))
            return self

    class Det:
        modules = [Spy()]

    class Seg:
        modules = [Spy()]

    models = GroundingModels(Det(), Seg())
    with pytest.raises(RuntimeError):
        with models.placed("cuda:0", "cpu") as device:
            assert str(device) == "cuda:0" and moves == ["cuda:0", "cuda:0"]
            raise RuntimeError("boom")
    assert moves == ["cuda:0", "cuda:0", "cpu", "cpu"]


def test_training_checkpoints_with_an_args_namespace_load_but_code_pickles_do_not(tmp_path):
    """IDEA-style checkpoints are {"model": state_dict, "args": argparse.Namespace(...)}."""
    from rationalrewards.grounding.loader import GroundingLoadError, read_tensors

    good = tmp_path / "train_ckpt.pth"
    torch.save({"model": {"w": torch.ones(2)}, "args": argparse.Namespace(lr=1e-4, backbone="swin_T")}, good)
    ckpt = read_tensors(good)
    assert torch.equal(ckpt["model"]["w"], torch.ones(2)) and ckpt["args"].backbone == "swin_T"
    bad = tmp_path / "code.pth"
    torch.save({"model": {"w": torch.ones(2)}, "extra": fractions.Fraction(1, 3)}, bad)
    with pytest.raises(GroundingLoadError, match="weights_only"):
        read_tensors(bad)
