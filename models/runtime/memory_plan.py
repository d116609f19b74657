"""How much memory a critique needs, from the checkpoint's config (no weights), before anything loads.

A critique needs the weights (by dtype or quantisation), the KV cache for the prompt plus the token
budget, the vision tower's activations at the image size, and the language model's prefill
activations. ``plan()`` adds these up; ``MemoryPlan.refusal()`` says what would fit when a budget is
too small. The budget itself (free + evictable memory) is the caller's: inside ComfyUI the node layer
asks ComfyUI's memory manager. No ComfyUI, torch or transformers import here: it runs on a config dict.

Parameter counts come from the safetensors headers when a folder has weights (exact, any
architecture) and from the published layer shapes of the Qwen-VL families otherwise. Units: GiB
(2**30 bytes), the unit GPU cards are sold in.
"""
from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping, Sequence
from ..errors import RationalRewardsError

GiB = 2 ** 30
QUANTIZATIONS = ("none", "int8", "4bit")
DTYPE_BYTES = {"bf16": 2, "fp16": 2, "fp32": 4}
# Bytes per quantised linear weight: bnb int8 = 1 B + a float32 scale per output row (counted apart);
# bnb nf4 with double quantisation = 0.5 B + an 8-bit absmax per 64 weights + a float32 per 256 of those.
BYTES_PER_WEIGHT = {"int8": 1.0, "4bit": 0.5 + 1 / 64 + 4 / (64 * 256)}
TEXT_TOKENS = 640            # the templates' text around the images (system + rubric + request), generous
DEFAULT_IMAGE_PIXELS = 1024 * 1024
RUNTIME_RESERVE = GiB // 2   # allocator slack, cuBLAS workspaces, sampler tensors: what no formula sees


class MemoryPlanError(RationalRewardsError, ValueError):
    """A critique that cannot fit the memory available; the message names what would fit."""


@dataclass(frozen=True)
class WeightCounts:
    """Parameters split by how quantisation treats them."""
    linear: int        # weights of linear layers that bitsandbytes quantises (not lm_head/embeddings)
    linear_rows: int   # output rows of those layers (int8 keeps one float32 scale per row)
    other: int         # embeddings, lm_head, norms, biases, convolutions: kept in the compute dtype

    @property
    def total(self) -> int:
        return self.linear + self.other


@dataclass(frozen=True)
class Shape:
    """What the plan needs to know about a checkpoint."""
    model_type: str
    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    vision_hidden: int
    vision_intermediate: int
    vision_heads: int
    patch: int
    merge: int
    temporal: int
    weights: WeightCounts
    prequantized: str = ""   # "" or a description of the folder's own quantization_config
    prequantized_bits: float = 0.0

    @property
    def kv_bytes_per_token_per_byte(self) -> int:
        """Elements of K and V cached per token (times the cache dtype's bytes gives bytes)."""
        return 2 * self.layers * self.kv_heads * self.head_dim


@dataclass(frozen=True)
class MemoryPlan:
    """The bytes one critique call needs on its compute device."""
    quantization: str                 # none / int8 / 4bit / prequantized
    dtype: str
    weights: int
    kv_cache: int
    vision: int
    prefill: int
    reserve: int
    batch: int
    prompt_tokens: int
    new_tokens: int
    image_pixels: int
    images_per_item: int
    notes: tuple[str, ...] = field(default=())

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.vision + self.prefill + self.reserve

    @property
    def runtime(self) -> int:
        """Everything besides the weights (what a resident critic must still find per critique)."""
        return self.total - self.weights

    def fits(self, available: int) -> bool:
        return self.total <= available

    def weights_label(self) -> str:
        return self.dtype if self.quantization == "none" else self.quantization

    def describe(self) -> str:
        side = int(self.image_pixels ** 0.5)
        return (f"needs {gib(self.total)}: weights {gib(self.weights)} ({self.weights_label()}), KV cache "
                f"{gib(self.kv_cache)} for {self.batch} x ({self.prompt_tokens} prompt + {self.new_tokens} new) "
                f"tokens, vision {gib(self.vision)} at {self.images_per_item} x ~{side}x{side} px, prefill "
                f"{gib(self.prefill)}, reserve {gib(self.reserve)}")


def gib(n: float) -> str:
    return f"{n / GiB:.1f} GiB"


# -- shapes -----------------------------------------------------------------------------------------
def _text_config(cfg: Mapping) -> Mapping:
    return cfg.get("text_config") or cfg


def _vision_config(cfg: Mapping) -> Mapping:
    return cfg.get("vision_config") or {}


def count_parameters(cfg: Mapping) -> WeightCounts:
    """Parameter counts from the layer shapes of Qwen3-VL / Qwen2.5-VL (the checked families)."""
    mt = cfg.get("model_type", "")
    t, v = _text_config(cfg), _vision_config(cfg)
    h, inter, layers = t["hidden_size"], t["intermediate_size"], t["num_hidden_layers"]
    nh = t["num_attention_heads"]
    nkv = t.get("num_key_value_heads") or nh
    hd = t.get("head_dim") or h // nh
    vocab = t["vocab_size"]
    tied = bool(cfg.get("tie_word_embeddings", t.get("tie_word_embeddings", False)))
    q, kv = nh * hd, nkv * hd
    lin = layers * (h * q + 2 * h * kv + q * h + 3 * h * inter)
    rows = layers * (q + 2 * kv + h + 2 * inter + h)
    other = vocab * h * (1 if tied else 2) + h + layers * 2 * h
    vh, vi, depth = v["hidden_size"], v["intermediate_size"], v["depth"]
    p, m, tp = v["patch_size"], v.get("spatial_merge_size", 2), v.get("temporal_patch_size", 2)
    merged = vh * m * m
    out = v.get("out_hidden_size", h)
    if mt == "qwen3_vl":
        lin += depth * (vh * 3 * vh + vh * vh + 2 * vh * vi)
        rows += depth * (3 * vh + vh + vi + vh)
        other += layers * 2 * hd                                          # q_norm, k_norm
        other += 3 * tp * p * p * vh + vh + v.get("num_position_embeddings", 0) * vh
        other += depth * (4 * vh + 3 * vh + vh + vi + vh)                 # 2 LayerNorms + biases
        mergers = 1 + len(v.get("deepstack_visual_indexes", []) or [])
        lin += mergers * (merged * merged + merged * out)
        rows += mergers * (merged + out)
        other += mergers * (merged + out) + 2 * vh + (mergers - 1) * 2 * merged   # biases + norms
    elif mt in ("qwen2_5_vl",):
        other += layers * (q + 2 * kv)                                    # q/k/v biases
        lin += depth * (vh * 3 * vh + vh * vh + 3 * vh * vi)
        rows += depth * (3 * vh + vh + 2 * vi + vh)
        other += 3 * tp * p * p * vh                                      # conv, no bias
        other += depth * (2 * vh + 3 * vh + vh + 2 * vi + vh)             # 2 RMSNorms + biases
        lin += merged * merged + merged * out
        rows += merged + out
        other += vh + merged + out
    else:
        raise MemoryPlanError(f"no layer-shape formula for model_type {mt!r}; plan from a folder with weights "
                              "(the safetensors headers give exact counts)")
    return WeightCounts(linear=lin, linear_rows=rows, other=other)


def count_from_safetensors(folder: str | Path) -> WeightCounts:
    """Exact counts from the weight files' headers (no tensor is read). Linear = 2-D ``*.weight`` that is
    not an embedding or the lm_head (what bitsandbytes replaces)."""
    lin = rows = other = 0
    for f in sorted(Path(folder).glob("*.safetensors")):
        with open(f, "rb") as fh:
            (size,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(size))
        for name, meta in header.items():
            if name == "__metadata__":
                continue
            shape = meta["shape"]
            n = 1
            for s in shape:
                n *= s
            if len(shape) == 2 and name.endswith(".weight") and "embed" not in name and "lm_head" not in name:
                lin += n
                rows += shape[0]
            else:
                other += n
    return WeightCounts(linear=lin, linear_rows=rows, other=other)


def describe_prequantized(cfg: Mapping) -> str:
    """'' for a plain checkpoint, else what its ``quantization_config`` says (bnb, AWQ, GPTQ, FP8, ...)."""
    q = cfg.get("quantization_config") or _text_config(cfg).get("quantization_config")
    if not q:
        return ""
    method = str(q.get("quant_method", "unknown"))
    if method == "bitsandbytes":
        if q.get("load_in_4bit"):
            return f"bitsandbytes 4-bit ({q.get('bnb_4bit_quant_type', 'fp4')})"
        return "bitsandbytes 8-bit"
    bits = q.get("bits") or q.get("w_bit")
    if method == "compressed-tensors":
        groups = q.get("config_groups") or {}
        for g in groups.values():
            w = (g or {}).get("weights") or {}
            if w.get("num_bits"):
                bits = w["num_bits"]
                method += f" ({w.get('type', 'int')})"
                break
    return f"{method}{f' {bits}-bit' if bits else ''}"


def _prequantized_bits(cfg: Mapping) -> float:
    q = cfg.get("quantization_config") or _text_config(cfg).get("quantization_config") or {}
    method = q.get("quant_method", "")
    if method == "bitsandbytes":
        return 4 if q.get("load_in_4bit") else 8
    if method in ("fp8", "fbgemm_fp8", "finegrained_fp8"):
        return 8
    for g in (q.get("config_groups") or {}).values():
        w = (g or {}).get("weights") or {}
        if w.get("num_bits"):
            return float(w["num_bits"])
    return float(q.get("bits") or q.get("w_bit") or 8)


def shape_from_config(cfg: Mapping, weights: WeightCounts | None = None) -> Shape:
    """The plan's view of a checkpoint config (a ``config.json`` dict)."""
    t, v = _text_config(cfg), _vision_config(cfg)
    nh = t["num_attention_heads"]
    return Shape(
        model_type=cfg.get("model_type", ""), layers=t["num_hidden_layers"], hidden=t["hidden_size"],
        intermediate=t["intermediate_size"], heads=nh, kv_heads=t.get("num_key_value_heads") or nh,
        head_dim=t.get("head_dim") or t["hidden_size"] // nh, vocab=t["vocab_size"],
        vision_hidden=v.get("hidden_size", v.get("embed_dim", 0)), vision_intermediate=v.get("intermediate_size", 0),
        vision_heads=v.get("num_heads", 1), patch=v.get("patch_size", 14), merge=v.get("spatial_merge_size", 2),
        temporal=v.get("temporal_patch_size", 2), weights=weights or count_parameters(cfg),
        prequantized=describe_prequantized(cfg),
        prequantized_bits=_prequantized_bits(cfg) if describe_prequantized(cfg) else 0.0)


def shape_from_folder(folder: str | Path) -> Shape:
    """Shape of a checkpoint folder: its config.json plus exact counts from its safetensors headers."""
    folder = Path(folder)
    cfg = json.loads((folder / "config.json").read_text())
    counts = count_from_safetensors(folder) if any(folder.glob("*.safetensors")) else None
    shape = shape_from_config(cfg, counts)
    if shape.prequantized:   # packed weights: the headers count bytes, not parameters; use the formula if we can
        try:
            shape = replace(shape, weights=count_parameters(cfg))
        except MemoryPlanError:
            pass
    return shape


# -- the plan ---------------------------------------------------------------------------------------
def weight_bytes(weights: WeightCounts, quantization: str, dtype_bytes: int) -> int:
    """Bytes of the weights on the device: quantised linear layers + everything else in the compute dtype."""
    if quantization == "none":
        return weights.total * dtype_bytes
    if quantization == "int8":
        return int(weights.linear * BYTES_PER_WEIGHT["int8"] + 4 * weights.linear_rows + weights.other * dtype_bytes)
    if quantization == "4bit":
        return int(weights.linear * BYTES_PER_WEIGHT["4bit"] + weights.other * dtype_bytes)
    raise ValueError(f"quantization must be one of {QUANTIZATIONS}; got {quantization!r}")


def image_tokens(shape: Shape, pixels: int) -> int:
    """Qwen-VL: one language-model token per (patch * merge)^2 pixels."""
    side = shape.patch * shape.merge
    return max(1, pixels // (side * side))


def plan(shape: Shape, *, quantization: str = "none", dtype: str = "bf16", batch: int = 1,
         image_pixels: int = DEFAULT_IMAGE_PIXELS, images_per_item: int = 1, new_tokens: int = 2048,
         attention: str = "sdpa", text_tokens: int = TEXT_TOKENS) -> MemoryPlan:
    """Memory one critique call of ``batch`` items needs on the compute device.

    Attention: ``sdpa`` / ``flash_attention_2`` keep attention activations linear in the length (as on
    CUDA); ``eager`` materialises the score matrices, counted here.
    """
    elt = DTYPE_BYTES[dtype]
    notes: list[str] = []
    if shape.prequantized:
        bits = shape.prequantized_bits or 8
        per = bits / 8 + (1 / 64 if bits < 8 else 0)   # + group scales
        weights = int(shape.weights.linear * per + shape.weights.other * elt)
        label = "prequantized"
        notes.append(f"the folder is already quantised ({shape.prequantized})")
    else:
        weights = weight_bytes(shape.weights, quantization, elt)
        label = quantization
    prompt = text_tokens + images_per_item * image_tokens(shape, image_pixels)
    kv = shape.kv_bytes_per_token_per_byte * elt * batch * (prompt + new_tokens)
    # Vision tower: one batch of patches; live per block ~ qkv + residual + attention out + the MLP's hidden,
    # plus float32 pixel patches and the merged deepstack features it hands to the language model.
    patches = batch * images_per_item * max(1, image_pixels // (shape.patch * shape.patch))
    vh, vi = shape.vision_hidden, shape.vision_intermediate
    vision = patches * (5 * vh + 2 * vi) * elt + patches * 3 * shape.temporal * shape.patch ** 2 * 4
    vision += 4 * (patches // max(1, shape.merge ** 2)) * shape.hidden * elt
    if attention == "eager":
        per_image = image_pixels // (shape.patch * shape.patch)
        vision += shape.vision_heads * per_image * per_image * elt
    # Language-model prefill over the whole prompt: hidden states, q/k/v, the MLP's gate/up, last-token
    # logits in float32 (twice: scores and the sampler's copy).
    prefill = batch * prompt * (4 * shape.hidden + (shape.heads + 2 * shape.kv_heads) * shape.head_dim
                                + 2 * shape.intermediate) * elt
    prefill += 2 * batch * shape.vocab * 4
    if attention == "eager":
        prefill += batch * shape.heads * prompt * prompt * elt
    return MemoryPlan(quantization=label, dtype=dtype, weights=weights, kv_cache=kv, vision=vision, prefill=prefill,
                      reserve=RUNTIME_RESERVE, batch=batch, prompt_tokens=prompt, new_tokens=new_tokens,
                      image_pixels=image_pixels, images_per_item=images_per_item, notes=tuple(notes))


def alternatives(shape: Shape, current: MemoryPlan, available: int, attention: str = "sdpa") -> list[str]:
    """What would fit ``available``: other quantisations, then batch 1, then smaller images."""
    def again(**kw) -> MemoryPlan:
        args = dict(quantization=current.quantization, dtype=current.dtype, batch=current.batch,
                    image_pixels=current.image_pixels, images_per_item=current.images_per_item,
                    new_tokens=current.new_tokens, attention=attention)
        args.update(kw)
        return plan(shape, **args)

    out: list[str] = []
    if not shape.prequantized:
        for q in QUANTIZATIONS:
            if q != current.quantization:
                p = again(quantization=q)
                if p.fits(available) and p.weights < current.weights:
                    out.append(f"quantize weights {q} (~{gib(p.total)})")
    if current.batch > 1 and again(batch=1).fits(available):
        out.append(f"images per critic pass 1 (~{gib(again(batch=1).total)})")
    if current.image_pixels > 512 * 512 and again(image_pixels=512 * 512).fits(available):
        out.append(f"max image pixels {512 * 512} (~{gib(again(image_pixels=512 * 512).total)})")
    return out


def check(shape: Shape, current: MemoryPlan, available: int, where: str = "the device",
          attention: str = "sdpa") -> None:
    """Raise MemoryPlanError naming what would fit when ``current`` does not fit ``available`` bytes."""
    if current.fits(available):
        return
    options = alternatives(shape, current, available, attention)
    fix = ("use " + " or ".join(options) + ", or the Connect to Critic Server node (the critic served elsewhere)"
           if options else "no local configuration fits: use the Connect to Critic Server node (the critic served "
                           "by vLLM or another machine), or free memory on this one")
    raise MemoryPlanError(f"the critic {current.describe()}; {gib(available)} available on {where} "
                          f"(free + what ComfyUI can evict): {fix}")


# -- the README table -------------------------------------------------------------------------------
# Generator sizes are assumptions, not measurements: what the generator holds on the GPU while it samples
# (ComfyUI offloads the text encoders after encoding): fp16 UNet + sampling activations at its native size.
# SD1.5: 0.86 B UNet (1.6 GiB) + ~0.9 GiB at 512 px; SDXL: 2.6 B UNet (4.8 GiB) + ~1.7 GiB at 1024 px;
# Flux-class: 12 B transformer in fp8 (11.1 GiB) + ~1.4 GiB at 1024 px.
GENERATORS: dict[str, float] = {"SD1.5": 2.5, "SDXL": 6.5, "Flux-class (fp8)": 12.5}
CARDS_GIB = (8, 12, 16, 24)


def table(shape: Shape, *, dtype: str = "bf16", new_tokens: int = 2048,
          image_pixels: int = DEFAULT_IMAGE_PIXELS, cards: Sequence[int] = CARDS_GIB,
          generators: Mapping[str, float] = GENERATORS) -> str:
    """Markdown: per card and generator, which critic configuration fits (swapping with the generator
    under ComfyUI's memory manager, or resident beside it)."""
    plans = {q: plan(shape, quantization=q, dtype=dtype, new_tokens=new_tokens, image_pixels=image_pixels)
             for q in QUANTIZATIONS}
    lines = ["| card | generator (assumed GiB) | critic swaps with the generator | critic stays beside it |",
             "|---|---|---|---|"]
    for card in cards:
        budget = card * GiB - GiB // 2          # the CUDA context and the desktop take about half a GiB
        for gen, size in generators.items():
            swap = [q for q, p in plans.items() if p.fits(budget)]
            beside = [q for q, p in plans.items() if p.fits(budget - int(size * GiB))]
            fmt = lambda qs: ", ".join(f"{q} ({gib(plans[q].total)})" for q in qs) if qs else "server critic"
            if size > budget / GiB:
                lines.append(f"| {card} GB | {gen} ({size:g}) | generator needs ComfyUI's partial offload; "
                             f"{fmt(swap)} | server critic |")
            else:
                lines.append(f"| {card} GB | {gen} ({size:g}) | {fmt(swap)} | {fmt(beside)} |")
    return "\n".join(lines)


# -- the native critic (ComfyUI's own Qwen3-VL, a file made by ``rationalrewards export``) --------------
NATIVE_FORMATS = ("bf16", "fp8")
# Host-to-GPU bandwidth assumed for weight streaming (PCIe 4.0 x16 in practice): an assumption, not a measurement.
STREAM_BYTES_PER_S = 25e9


def language_linear(shape: Shape) -> int:
    """Weights of the language model's attention and MLP projections: what the fp8 file stores in 8 bits."""
    q, kv = shape.heads * shape.head_dim, shape.kv_heads * shape.head_dim
    return shape.layers * (shape.hidden * q + 2 * shape.hidden * kv + q * shape.hidden
                           + 3 * shape.hidden * shape.intermediate)


def native_weight_bytes(shape: Shape, fmt: str) -> int:
    """Bytes of an exported file's weights: bf16 everything, or the projections in fp8 (+ a float32 scale each)."""
    if fmt not in NATIVE_FORMATS:
        raise ValueError(f"format must be one of {NATIVE_FORMATS}; got {fmt!r}")
    total = shape.weights.total * 2
    if fmt == "bf16":
        return total
    projections = language_linear(shape)
    return total - projections + 4 * 7 * shape.layers      # 1 byte instead of 2, one scale per projection


def native_plan(shape: Shape, fmt: str, *, new_tokens: int = 2048, image_pixels: int = DEFAULT_IMAGE_PIXELS,
                images_per_item: int = 1) -> MemoryPlan:
    """One native critique (batch 1: ComfyUI's Qwen3-VL decodes one sequence at a time), computing in bf16."""
    base = plan(shape, dtype="bf16", new_tokens=new_tokens, image_pixels=image_pixels, images_per_item=images_per_item)
    return replace(base, quantization=f"{fmt} file", weights=native_weight_bytes(shape, fmt),
                   notes=("ComfyUI's own Qwen3-VL",))


def streaming(current: MemoryPlan, budget: int) -> tuple[int, float]:
    """(bytes of weights left in host memory, seconds per token to stream them) when ``current`` does not fit
    ``budget`` whole: ComfyUI's dynamic VRAM keeps what fits and streams the rest through every forward pass
    (each new token), at :data:`STREAM_BYTES_PER_S`."""
    resident = max(0, budget - current.runtime)
    left = max(0, current.weights - resident)
    return left, left / STREAM_BYTES_PER_S


def native_table(shape: Shape, *, new_tokens: int = 2048, image_pixels: int = DEFAULT_IMAGE_PIXELS,
                 cards: Sequence[int] = CARDS_GIB) -> str:
    """Markdown: per card, each exported file whole on the GPU, or how much ComfyUI streams per token."""
    plans = {f: native_plan(shape, f, new_tokens=new_tokens, image_pixels=image_pixels) for f in NATIVE_FORMATS}
    lines = ["| card | " + " | ".join(f"{f} file ({gib(p.weights)} weights + {gib(p.runtime)} per critique)"
                                      for f, p in plans.items()) + " |",
             "|---|" + "---|" * len(plans)]
    for card in cards:
        budget = card * GiB - GiB // 2
        cells = []
        for p in plans.values():
            left, seconds = streaming(p, budget)
            cells.append("whole on the GPU" if not left else
                         f"streams {gib(left)} per token (~{seconds:.2f} s/token at {STREAM_BYTES_PER_S / 1e9:g} GB/s)"
                         if budget > p.runtime else "does not fit (use the server critic)")
        lines.append(f"| {card} GB | " + " | ".join(cells) + " |")
    return "\n".join(lines)


QWEN3_VL_8B = {   # the published config.json of Qwen/Qwen3-VL-8B-Instruct (sizes only)
    "model_type": "qwen3_vl", "tie_word_embeddings": False,
    "text_config": {"hidden_size": 4096, "intermediate_size": 12288, "num_hidden_layers": 36,
                    "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 151936},
    "vision_config": {"depth": 27, "hidden_size": 1152, "intermediate_size": 4304, "num_heads": 16,
                      "out_hidden_size": 4096, "patch_size": 16, "spatial_merge_size": 2, "temporal_patch_size": 2,
                      "num_position_embeddings": 2304, "deepstack_visual_indexes": [8, 16, 24]},
}


if __name__ == "__main__":   # python -m rationalrewards.runtime.memory_plan [CONFIG_OR_FOLDER]
    import sys
    arg = sys.argv[1] if len(sys.argv) > 1 else ""
    s = (shape_from_folder(arg) if arg and Path(arg).is_dir() else
         shape_from_config(json.loads(Path(arg).read_text())) if arg else shape_from_config(QWEN3_VL_8B))
    for q in QUANTIZATIONS:
        print(f"{q:5s} {plan(s, quantization=q).describe()}")
    for f in NATIVE_FORMATS:
        print(f"native {f} file: {native_plan(s, f).describe()}")
    print()
    print(table(s))
    print()
    print(native_table(s))
