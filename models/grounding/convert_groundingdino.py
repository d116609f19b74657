"""Original GroundingDINO checkpoints (``groundingdino_swint_ogc.pth``, ``groundingdino_swinb_cogcoor.pth``)
as transformers' ``GroundingDinoForObjectDetection``, without the groundingdino package.

The key mapping follows transformers' ``convert_grounding_dino_to_hf.py`` (the official conversion) and
targets the key names of the converted checkpoints on the Hugging Face Hub
(``IDEA-Research/grounding-dino-*``). Loading goes through ``from_pretrained(state_dict=...)``, so
transformers applies its own renames for the installed version on top. Every rule is a pair of
templates, so the mapping runs both ways; the reverse direction lets the tests build an
original-format state dict from a tiny random model.

Fused projections in the original (Swin ``attn.qkv``, ``nn.MultiheadAttention`` ``in_proj_*``) are
split into query/key/value in that order, as the official script does.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Mapping

import torch
from ..errors import RationalRewardsError

_PLACEHOLDERS = {"i": r"\d+", "j": r"\d+", "p": r"weight|bias", "rest": r".+"}
SWIN = "model.backbone.conv_encoder.model"

# (original template, hub template). {i},{j}: layer/block indices; {p}: weight|bias; {rest}: any suffix.
RENAMES: tuple[tuple[str, str], ...] = (
    # Swin backbone
    ("backbone.0.patch_embed.proj.{p}", SWIN + ".embeddings.patch_embeddings.projection.{p}"),
    ("backbone.0.patch_embed.norm.{p}", SWIN + ".embeddings.norm.{p}"),
    ("backbone.0.layers.{i}.blocks.{j}.norm1.{p}", SWIN + ".encoder.layers.{i}.blocks.{j}.layernorm_before.{p}"),
    ("backbone.0.layers.{i}.blocks.{j}.norm2.{p}", SWIN + ".encoder.layers.{i}.blocks.{j}.layernorm_after.{p}"),
    ("backbone.0.layers.{i}.blocks.{j}.attn.relative_position_bias_table",
     SWIN + ".encoder.layers.{i}.blocks.{j}.attention.self.relative_position_bias_table"),
    # a buffer: saved by the original and by transformers 4.x (persistent there), rebuilt by transformers 5
    ("backbone.0.layers.{i}.blocks.{j}.attn.relative_position_index",
     SWIN + ".encoder.layers.{i}.blocks.{j}.attention.self.relative_position_index"),
    ("backbone.0.layers.{i}.blocks.{j}.attn.proj.{p}", SWIN + ".encoder.layers.{i}.blocks.{j}.attention.output.dense.{p}"),
    ("backbone.0.layers.{i}.blocks.{j}.mlp.fc1.{p}", SWIN + ".encoder.layers.{i}.blocks.{j}.intermediate.dense.{p}"),
    ("backbone.0.layers.{i}.blocks.{j}.mlp.fc2.{p}", SWIN + ".encoder.layers.{i}.blocks.{j}.output.dense.{p}"),
    ("backbone.0.layers.{i}.downsample.reduction.weight", SWIN + ".encoder.layers.{i}.downsample.reduction.weight"),
    ("backbone.0.layers.{i}.downsample.norm.{p}", SWIN + ".encoder.layers.{i}.downsample.norm.{p}"),
    # the original names output norms by stage index 0-3, transformers by stage name 1-4
    ("backbone.0.norm0.{p}", SWIN + ".hidden_states_norms.stage1.{p}"),
    ("backbone.0.norm1.{p}", SWIN + ".hidden_states_norms.stage2.{p}"),
    ("backbone.0.norm2.{p}", SWIN + ".hidden_states_norms.stage3.{p}"),
    ("backbone.0.norm3.{p}", SWIN + ".hidden_states_norms.stage4.{p}"),
    # encoder: deformable image layers, text enhancer, image-text fusion
    ("transformer.encoder.layers.{i}.self_attn.sampling_offsets.{p}",
     "model.encoder.layers.{i}.deformable_layer.self_attn.sampling_offsets.{p}"),
    ("transformer.encoder.layers.{i}.self_attn.attention_weights.{p}",
     "model.encoder.layers.{i}.deformable_layer.self_attn.attention_weights.{p}"),
    ("transformer.encoder.layers.{i}.self_attn.value_proj.{p}", "model.encoder.layers.{i}.deformable_layer.self_attn.value_proj.{p}"),
    ("transformer.encoder.layers.{i}.self_attn.output_proj.{p}", "model.encoder.layers.{i}.deformable_layer.self_attn.output_proj.{p}"),
    ("transformer.encoder.layers.{i}.norm1.{p}", "model.encoder.layers.{i}.deformable_layer.self_attn_layer_norm.{p}"),
    ("transformer.encoder.layers.{i}.linear1.{p}", "model.encoder.layers.{i}.deformable_layer.fc1.{p}"),
    ("transformer.encoder.layers.{i}.linear2.{p}", "model.encoder.layers.{i}.deformable_layer.fc2.{p}"),
    ("transformer.encoder.layers.{i}.norm2.{p}", "model.encoder.layers.{i}.deformable_layer.final_layer_norm.{p}"),
    ("transformer.encoder.text_layers.{i}.self_attn.out_proj.{p}", "model.encoder.layers.{i}.text_enhancer_layer.self_attn.out_proj.{p}"),
    ("transformer.encoder.text_layers.{i}.linear1.{p}", "model.encoder.layers.{i}.text_enhancer_layer.fc1.{p}"),
    ("transformer.encoder.text_layers.{i}.linear2.{p}", "model.encoder.layers.{i}.text_enhancer_layer.fc2.{p}"),
    ("transformer.encoder.text_layers.{i}.norm1.{p}", "model.encoder.layers.{i}.text_enhancer_layer.layer_norm_before.{p}"),
    ("transformer.encoder.text_layers.{i}.norm2.{p}", "model.encoder.layers.{i}.text_enhancer_layer.layer_norm_after.{p}"),
    ("transformer.encoder.fusion_layers.{i}.gamma_v", "model.encoder.layers.{i}.fusion_layer.vision_param"),
    ("transformer.encoder.fusion_layers.{i}.gamma_l", "model.encoder.layers.{i}.fusion_layer.text_param"),
    ("transformer.encoder.fusion_layers.{i}.layer_norm_v.{p}", "model.encoder.layers.{i}.fusion_layer.layer_norm_vision.{p}"),
    ("transformer.encoder.fusion_layers.{i}.layer_norm_l.{p}", "model.encoder.layers.{i}.fusion_layer.layer_norm_text.{p}"),
    ("transformer.encoder.fusion_layers.{i}.attn.v_proj.{p}", "model.encoder.layers.{i}.fusion_layer.attn.vision_proj.{p}"),
    ("transformer.encoder.fusion_layers.{i}.attn.l_proj.{p}", "model.encoder.layers.{i}.fusion_layer.attn.text_proj.{p}"),
    ("transformer.encoder.fusion_layers.{i}.attn.values_v_proj.{p}", "model.encoder.layers.{i}.fusion_layer.attn.values_vision_proj.{p}"),
    ("transformer.encoder.fusion_layers.{i}.attn.values_l_proj.{p}", "model.encoder.layers.{i}.fusion_layer.attn.values_text_proj.{p}"),
    ("transformer.encoder.fusion_layers.{i}.attn.out_v_proj.{p}", "model.encoder.layers.{i}.fusion_layer.attn.out_vision_proj.{p}"),
    ("transformer.encoder.fusion_layers.{i}.attn.out_l_proj.{p}", "model.encoder.layers.{i}.fusion_layer.attn.out_text_proj.{p}"),
    # decoder
    ("transformer.decoder.layers.{i}.cross_attn.sampling_offsets.{p}", "model.decoder.layers.{i}.encoder_attn.sampling_offsets.{p}"),
    ("transformer.decoder.layers.{i}.cross_attn.attention_weights.{p}", "model.decoder.layers.{i}.encoder_attn.attention_weights.{p}"),
    ("transformer.decoder.layers.{i}.cross_attn.value_proj.{p}", "model.decoder.layers.{i}.encoder_attn.value_proj.{p}"),
    ("transformer.decoder.layers.{i}.cross_attn.output_proj.{p}", "model.decoder.layers.{i}.encoder_attn.output_proj.{p}"),
    ("transformer.decoder.layers.{i}.norm1.{p}", "model.decoder.layers.{i}.encoder_attn_layer_norm.{p}"),
    ("transformer.decoder.layers.{i}.ca_text.out_proj.{p}", "model.decoder.layers.{i}.encoder_attn_text.out_proj.{p}"),
    ("transformer.decoder.layers.{i}.catext_norm.{p}", "model.decoder.layers.{i}.encoder_attn_text_layer_norm.{p}"),
    ("transformer.decoder.layers.{i}.self_attn.out_proj.{p}", "model.decoder.layers.{i}.self_attn.out_proj.{p}"),
    ("transformer.decoder.layers.{i}.norm2.{p}", "model.decoder.layers.{i}.self_attn_layer_norm.{p}"),
    ("transformer.decoder.layers.{i}.linear1.{p}", "model.decoder.layers.{i}.fc1.{p}"),
    ("transformer.decoder.layers.{i}.linear2.{p}", "model.decoder.layers.{i}.fc2.{p}"),
    ("transformer.decoder.layers.{i}.norm3.{p}", "model.decoder.layers.{i}.final_layer_norm.{p}"),
    ("transformer.decoder.norm.{p}", "model.decoder.layer_norm.{p}"),
    ("transformer.decoder.ref_point_head.{rest}", "model.decoder.reference_points_head.{rest}"),
    ("transformer.decoder.bbox_embed.{rest}", "model.decoder.bbox_embed.{rest}"),
    # two-stage heads and embeddings
    ("transformer.enc_output.{p}", "model.enc_output.{p}"),
    ("transformer.enc_output_norm.{p}", "model.enc_output_norm.{p}"),
    ("transformer.enc_out_bbox_embed.{rest}", "model.encoder_output_bbox_embed.{rest}"),
    ("transformer.level_embed", "model.level_embed"),
    ("transformer.tgt_embed.weight", "model.query_position_embeddings.weight"),
    ("bbox_embed.{rest}", "bbox_embed.{rest}"),
    # text backbone (BERT) and projections
    ("bert.{rest}", "model.text_backbone.{rest}"),
    ("feat_map.{p}", "model.text_projection.{p}"),
    ("input_proj.{rest}", "model.input_proj_vision.{rest}"),
)

# Fused query/key/value projections: (original template, hub template with {q} = query|key|value).
FUSED: tuple[tuple[str, str], ...] = (
    ("backbone.0.layers.{i}.blocks.{j}.attn.qkv.{p}", SWIN + ".encoder.layers.{i}.blocks.{j}.attention.self.{q}.{p}"),
    ("transformer.encoder.text_layers.{i}.self_attn.in_proj_{p}", "model.encoder.layers.{i}.text_enhancer_layer.self_attn.{q}.{p}"),
    ("transformer.decoder.layers.{i}.self_attn.in_proj_{p}", "model.decoder.layers.{i}.self_attn.{q}.{p}"),
    ("transformer.decoder.layers.{i}.ca_text.in_proj_{p}", "model.decoder.layers.{i}.encoder_attn_text.{q}.{p}"),
)
QKV = ("query", "key", "value")

# Original keys with no counterpart: a buffer rebuilt at load time and BERT's unused pooler.
DROPPED = (
    re.compile(r"^bert\.embeddings\.position_ids$"),
    re.compile(r"^bert\.pooler\."),
)


@lru_cache(maxsize=None)
def _regex(template: str, with_q: bool = False) -> re.Pattern:
    groups = dict(_PLACEHOLDERS, q="query|key|value") if with_q else _PLACEHOLDERS
    out, pos = "", 0
    for m in re.finditer(r"\{(\w+)\}", template):
        out += re.escape(template[pos:m.start()]) + f"(?P<{m.group(1)}>{groups[m.group(1)]})"
        pos = m.end()
    return re.compile("^" + out + re.escape(template[pos:]) + "$")


@dataclass(frozen=True)
class _Rule:
    original: str
    hub: str

    def to_hub(self, key: str) -> str | None:
        m = _regex(self.original).match(key)
        return self.hub.format(**m.groupdict()) if m else None

    def to_original(self, key: str) -> str | None:
        m = _regex(self.hub).match(key)
        return self.original.format(**m.groupdict()) if m else None


_RULES = tuple(_Rule(o, h) for o, h in RENAMES)


@dataclass
class Conversion:
    state_dict: dict[str, torch.Tensor]
    unexpected: list[str]     # original keys that no rule maps (not silently loaded)
    dropped: list[str]        # original keys left out on purpose (buffers, BERT pooler)


def unwrap(checkpoint: Mapping) -> dict[str, torch.Tensor]:
    """The state dict inside a training checkpoint (``{"model": ...}``), without DDP ``module.`` prefixes."""
    sd = checkpoint
    for key in ("model", "state_dict", "model_state_dict"):
        if isinstance(sd, Mapping) and key in sd and isinstance(sd[key], Mapping):
            sd = sd[key]
            break
    return {(k[7:] if k.startswith("module.") else k): v for k, v in sd.items() if isinstance(v, torch.Tensor)}


def looks_like_original(state_dict: Mapping[str, torch.Tensor]) -> bool:
    return any(k.startswith("backbone.0.patch_embed.") for k in state_dict) and \
        any(k.startswith("transformer.") for k in state_dict) and any(k.startswith("bert.") for k in state_dict)


def original_to_hub(state_dict: Mapping[str, torch.Tensor]) -> Conversion:
    """Rename (and split fused q/k/v of) an original GroundingDINO state dict to the Hub's key names."""
    out: dict[str, torch.Tensor] = {}
    unexpected, dropped = [], []
    fused = [(_regex(o), h) for o, h in FUSED]
    for key, value in state_dict.items():
        if any(rx.match(key) for rx in DROPPED):
            dropped.append(key)
            continue
        for rx, hub in fused:
            m = rx.match(key)
            if m:
                for q, part in zip(QKV, torch.chunk(value, 3, dim=0)):
                    out[hub.format(q=q, **m.groupdict())] = part.contiguous()
                break
        else:
            for rule in _RULES:
                new = rule.to_hub(key)
                if new is not None:
                    out[new] = value
                    break
            else:
                unexpected.append(key)
    return Conversion(out, unexpected, dropped)


def hub_to_original(state_dict: Mapping[str, torch.Tensor], decoder_layers: int | None = None) -> dict[str, torch.Tensor]:
    """The reverse mapping: a Hub-named state dict as the original repository saves it.

    With ``decoder_layers`` the shared box head is written under every decoder layer and under
    ``transformer.decoder.bbox_embed`` too, as the original model's state dict lists it."""
    out: dict[str, torch.Tensor] = {}
    pending: dict[str, dict[str, torch.Tensor]] = {}
    fused = [(_regex(h, True), o) for o, h in FUSED]
    for key, value in state_dict.items():
        if ".swin.layernorm." in key:   # saved by transformers, unused by the detector; no original counterpart
            continue
        for rx, orig in fused:
            m = rx.match(key)
            if m:
                groups = m.groupdict()
                q = groups.pop("q")
                pending.setdefault(orig.format(**groups), {})[q] = value
                break
        else:
            for rule in _RULES:
                new = rule.to_original(key)
                if new is not None:
                    out[new] = value
                    break
            else:
                raise KeyError(f"no original-format name for {key!r}")
    for key, parts in pending.items():
        if set(parts) != set(QKV):
            raise KeyError(f"{key}: only {sorted(parts)} of query/key/value present")
        out[key] = torch.cat([parts[q] for q in QKV], dim=0)
    if decoder_layers:
        head = {k[len("bbox_embed.0."):]: v for k, v in out.items() if k.startswith("bbox_embed.0.")}
        for layer in range(decoder_layers):
            for suffix, v in head.items():
                out.setdefault(f"bbox_embed.{layer}.{suffix}", v)
                out.setdefault(f"transformer.decoder.bbox_embed.{layer}.{suffix}", v)
    return out


# --- configuration from the weights -------------------------------------------------------------------

def _count(state_dict: Mapping[str, torch.Tensor], pattern: str) -> int:
    rx = re.compile(pattern)
    return len({m.group(1) for k in state_dict for m in [rx.match(k)] if m})


def infer_config(state_dict: Mapping[str, torch.Tensor]):
    """A ``GroundingDinoConfig`` for an original state dict, read from tensor shapes.

    What shapes cannot tell follows the released configs: 8 attention heads for d_model 256
    (``max(2, d_model // 32)`` in general), BERT heads of size 64, 4 sampling points resolved from
    the offset shapes, two-stage with a separate encoder box head, max_text_len 256.
    """
    from transformers import GroundingDinoConfig

    sd = state_dict
    embed_dim = sd["backbone.0.patch_embed.proj.weight"].shape[0]
    patch = sd["backbone.0.patch_embed.proj.weight"].shape[-1]
    stages = _count(sd, r"^backbone\.0\.layers\.(\d+)\.")
    depths = [_count(sd, rf"^backbone\.0\.layers\.{s}\.blocks\.(\d+)\.") for s in range(stages)]
    heads = [sd[f"backbone.0.layers.{s}.blocks.0.attn.relative_position_bias_table"].shape[1] for s in range(stages)]
    window = (int(round(math.sqrt(sd["backbone.0.layers.0.blocks.0.attn.relative_position_bias_table"].shape[0]))) + 1) // 2
    out_stages = sorted(int(m.group(1)) + 1 for k in sd for m in [re.match(r"^backbone\.0\.norm(\d)\.weight$", k)] if m)

    words = sd["bert.embeddings.word_embeddings.weight"]
    hidden = words.shape[1]
    text_config = dict(
        model_type="bert", vocab_size=words.shape[0], hidden_size=hidden,
        num_hidden_layers=_count(sd, r"^bert\.encoder\.layer\.(\d+)\."), num_attention_heads=max(1, hidden // 64),
        intermediate_size=sd["bert.encoder.layer.0.intermediate.dense.weight"].shape[0],
        max_position_embeddings=sd["bert.embeddings.position_embeddings.weight"].shape[0],
        type_vocab_size=sd["bert.embeddings.token_type_embeddings.weight"].shape[0])

    d_model = sd["feat_map.weight"].shape[0]
    levels = sd["transformer.level_embed"].shape[0]
    n_heads = max(2, d_model // 32)

    def points(prefix: str) -> int:
        return sd[prefix + ".attention_weights.weight"].shape[0] // (n_heads * levels)

    return GroundingDinoConfig(
        backbone_config=dict(model_type="swin", image_size=384 if window == 12 else 224, patch_size=patch,
                             embed_dim=embed_dim, depths=depths, num_heads=heads, window_size=window,
                             out_features=[f"stage{s}" for s in out_stages]),
        text_config=text_config, d_model=d_model, num_queries=sd["transformer.tgt_embed.weight"].shape[0],
        encoder_layers=_count(sd, r"^transformer\.encoder\.layers\.(\d+)\."),
        decoder_layers=_count(sd, r"^transformer\.decoder\.layers\.(\d+)\."),
        encoder_ffn_dim=sd["transformer.encoder.layers.0.linear1.weight"].shape[0],
        decoder_ffn_dim=sd["transformer.decoder.layers.0.linear1.weight"].shape[0],
        encoder_attention_heads=n_heads, decoder_attention_heads=n_heads, num_feature_levels=levels,
        encoder_n_points=points("transformer.encoder.layers.0.self_attn"),
        decoder_n_points=points("transformer.decoder.layers.0.cross_attn"),
        two_stage="transformer.enc_output.weight" in sd, embedding_init_target="transformer.tgt_embed.weight" in sd,
        max_text_len=256, decoder_bbox_embed_share=True, two_stage_bbox_embed_share=False)


class ConversionError(RationalRewardsError, ValueError):
    """The file is not an original GroundingDINO checkpoint this mapping understands."""


def load_original(state_dict: Mapping[str, torch.Tensor], config=None):
    """A ``GroundingDinoForObjectDetection`` with the original weights (eval mode, on CPU).

    Raises ConversionError when keys are left over or missing, naming a few of them."""
    from transformers import GroundingDinoForObjectDetection

    state_dict = unwrap(state_dict)
    if not looks_like_original(state_dict):
        raise ConversionError("not an original GroundingDINO checkpoint (no backbone.0.patch_embed / transformer. / "
                              "bert. keys)")
    conv = original_to_hub(state_dict)
    if conv.unexpected:
        raise ConversionError(f"{len(conv.unexpected)} weights have no transformers counterpart, e.g. "
                              f"{conv.unexpected[:4]}; is this a GroundingDINO variant (e.g. a different text encoder)?")
    try:
        config = config or infer_config(state_dict)
    except KeyError as e:
        raise ConversionError(f"cannot read the model shape from the checkpoint: key {e} is missing") from None
    model, info = GroundingDinoForObjectDetection.from_pretrained(None, config=config, state_dict=conv.state_dict,
                                                                  output_loading_info=True)
    missing = sorted(k for k in info["missing_keys"] if ".swin.layernorm." not in k)
    # Swin's relative_position_index is loaded where transformers keeps it in the state dict (4.x) and
    # rebuilt where it does not (5.x): there it is reported unexpected, and that is expected.
    unexpected = sorted(k for k in info["unexpected_keys"] if not k.endswith(".relative_position_index"))
    problems = missing + unexpected + [str(k) for k in info["mismatched_keys"]]
    if problems:
        raise ConversionError(f"the converted weights do not fit the model: {len(problems)} problems, e.g. {problems[:4]}")
    return model.eval()
