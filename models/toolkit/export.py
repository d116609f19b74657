"""``rationalrewards export``: a Qwen3-VL checkpoint folder -> one ``.safetensors`` for ComfyUI's
``models/text_encoders/``, read by ComfyUI's own Qwen3-VL (ComfyUI >= 0.25, CLIPLoader / the pack's
native critic).

Why a file of its own: ComfyUI loads a text encoder from one file, in the Hugging Face key layout (its
loader renames ``model.language_model.`` / ``model.visual.`` / ``lm_head.``), so the checkpoint's shards
are merged -- streamed tensor by tensor into the output, never the whole model in memory (the safetensors
header is written first from the shards' headers, then each tensor is read, converted and appended).

Formats:

* ``bf16``: every floating tensor in bfloat16 (about 17.5 GB for the 8B critic);
* ``fp8``: the language model's linear weights (attention and MLP projections, the bulk of the model) in
  ComfyUI's scaled-fp8 layout -- ``<layer>.weight`` as float8_e4m3fn, ``<layer>.weight_scale`` a float32
  per-tensor scale (absmax / 448), and ``_quantization_metadata`` in the header naming each such layer
  ``{"format": "float8_e4m3fn"}`` (what ``comfy.utils.convert_old_quants`` reads); embeddings, ``lm_head``,
  norms and the vision tower stay bf16 (about 10.6 GB for the 8B critic).

The header's metadata says where the file came from: the source folder, a digest of its weights, the
template hashes the critic was published with, its image sizes (which the native critic reads back).
"""
from __future__ import annotations

import hashlib
import json
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from ..errors import RationalRewardsError
from .outputs import Staged

FORMATS = ("bf16", "fp8")
FP8_MAX = 448.0                      # largest finite float8_e4m3fn
QUANT_FORMAT = "float8_e4m3fn"       # ComfyUI's name of the layout (comfy/quant_ops.py QUANT_ALGOS)
# The language model's linear projections: what the fp8 file stores in 8 bits.
FP8_LAYER = re.compile(r"^model\.language_model\.layers\.\d+\.(self_attn\.[qkvo]_proj|mlp\.(gate|up|down)_proj)$")
NATIVE_SIZES = {2560: "4B", 4096: "8B"}   # language-model widths ComfyUI's Qwen3-VL has tables for
TEMPLATES = ("t2i_pointwise", "t2i_pairwise", "edit_pointwise", "edit_pairwise", "defect_phrases",
             "defect_phrases_edit")
META = "rationalrewards."            # prefix of the pack's own metadata keys

_DTYPES = {   # safetensors name -> (torch dtype name, bytes per element)
    "BOOL": ("bool", 1), "U8": ("uint8", 1), "I8": ("int8", 1), "I16": ("int16", 2), "I32": ("int32", 4),
    "I64": ("int64", 8), "F16": ("float16", 2), "BF16": ("bfloat16", 2), "F32": ("float32", 4),
    "F64": ("float64", 8), "F8_E4M3": ("float8_e4m3fn", 1), "F8_E5M2": ("float8_e5m2", 1),
}
_FLOAT = {"F16", "BF16", "F32", "F64"}

Progress = Callable[[int, int], None]   # (tensors written, tensors in all)


class ExportError(RationalRewardsError, ValueError):
    """A folder that cannot become a ComfyUI text-encoder file; the message says why and what to do."""


@dataclass(frozen=True)
class _Entry:
    name: str          # key in the output
    source: str        # key in the source shard
    file: Path
    dtype: str         # safetensors dtype written
    shape: tuple[int, ...]
    role: str          # "copy" (cast to dtype), "fp8" (quantised weight), "scale" (its scale)

    @property
    def nbytes(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n * _DTYPES[self.dtype][1]


@dataclass(frozen=True)
class ExportResult:
    path: Path
    format: str
    tensors: int
    fp8_layers: int
    bytes: int
    metadata: dict[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


def read_header(path: str | Path) -> dict:
    """A safetensors file's header (tensor names -> dtype, shape, offsets; ``__metadata__``), no tensor read."""
    with open(path, "rb") as fh:
        (size,) = struct.unpack("<Q", fh.read(8))
        return json.loads(fh.read(size))


def source_tensors(folder: Path) -> list[tuple[str, Path, str, tuple[int, ...]]]:
    """(name, shard, dtype, shape) of every tensor of a checkpoint folder, shard by shard, from headers."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        files = sorted({folder / f for f in json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()})
    else:
        files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise ExportError(f"{folder} holds no .safetensors weights; export reads a transformers checkpoint folder "
                          "(config.json + *.safetensors)")
    out = []
    for f in files:
        for name, meta in read_header(f).items():
            if name != "__metadata__":
                out.append((name, f, meta["dtype"], tuple(meta["shape"])))
    return out


def plan_entries(tensors, fmt: str) -> list[_Entry]:
    """What the output holds, in the order it is written (source order: one shard open at a time)."""
    entries = []
    for name, file, dtype, shape in tensors:
        layer = name[:-len(".weight")] if name.endswith(".weight") else ""
        if fmt == "fp8" and layer and FP8_LAYER.match(layer) and len(shape) == 2 and dtype in _FLOAT:
            entries.append(_Entry(name, name, file, "F8_E4M3", shape, "fp8"))
            entries.append(_Entry(f"{layer}.weight_scale", name, file, "F32", (), "scale"))
        else:
            entries.append(_Entry(name, name, file, "BF16" if dtype in _FLOAT else dtype, shape, "copy"))
    return entries


def quantize_fp8(weight):
    """(fp8 weight, float32 scale): per-tensor absmax scaling, as ComfyUI's float8_e4m3fn layout stores it."""
    import torch

    w = weight.float()
    amax = float(w.abs().max()) if w.numel() else 0.0
    scale = torch.tensor(amax / FP8_MAX if amax > 0 else 1.0, dtype=torch.float32)
    return (w / scale).clamp(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn), scale


def _config(folder: Path) -> dict:
    path = folder / "config.json"
    if not path.is_file():
        raise ExportError(f"{folder} has no config.json; export reads a transformers checkpoint folder")
    return json.loads(path.read_text(encoding="utf-8"))


def _check(folder: Path, cfg: dict) -> list[str]:
    if cfg.get("model_type") != "qwen3_vl":
        raise ExportError(f"{folder.name} is a {cfg.get('model_type') or 'unknown'} checkpoint; ComfyUI's own "
                          "runtime reads Qwen3-VL text encoders only (RationalRewards-8B is one). Load other "
                          "critics with Load RationalRewards Critic instead")
    if cfg.get("quantization_config") or (cfg.get("text_config") or {}).get("quantization_config"):
        raise ExportError(f"{folder.name} is already quantised; export from the bf16 checkpoint (fp8 is made by "
                          "--format fp8)")
    width = (cfg.get("text_config") or {}).get("hidden_size")
    if width not in NATIVE_SIZES:
        return [f"the language model is {width} wide; ComfyUI has Qwen3-VL tables for the 4B (2560) and 8B "
                "(4096) sizes only, so this file will not load in ComfyUI"]
    return []


def _image_sizes(folder: Path) -> dict[str, str]:
    """The processor's resize limits (the native critic resizes as the processor would), from
    ``preprocessor_config.json`` or (transformers >= 5) ``processor_config.json``'s ``image_processor``."""
    cfg: dict = {}
    for name, key in (("preprocessor_config.json", None), ("processor_config.json", "image_processor")):
        path = folder / name
        if path.is_file():
            data = json.loads(path.read_text(encoding="utf-8"))
            cfg = (data.get(key) if key else data) or {}
            break
    size = cfg.get("size") or {}
    low = cfg.get("min_pixels") or size.get("shortest_edge")
    high = cfg.get("max_pixels") or size.get("longest_edge")
    return {k: str(int(v)) for k, v in (("image_min_pixels", low), ("image_max_pixels", high)) if v}


def describe_source(folder: Path, template_dirs=()) -> dict[str, str]:
    """The pack's metadata for a file exported from ``folder`` (all but the weights digest)."""
    from ..critic.prompting import get_template
    from ..runtime.checkpoints import AUTO_MAX_PIXELS, resolve_max_pixels

    dirs = [str(folder / "templates"), *template_dirs]
    templates = {name: get_template(name, dirs).digest for name in TEMPLATES}
    trained, _ = resolve_max_pixels(AUTO_MAX_PIXELS, folder.name, folder)
    meta = {"source": folder.name, "templates": json.dumps(templates, sort_keys=True),
            **_image_sizes(folder)}
    if trained:
        meta["trained_max_pixels"] = str(trained)
    return {META + k: v for k, v in meta.items()}


def _bytes(t):
    """A tensor's raw bytes as a flat uint8 array (any dtype, numpy has no bfloat16 or fp8)."""
    import torch

    return t.contiguous().reshape(-1).view(torch.uint8).numpy()


def _tensors(entries: list[_Entry]) -> Iterator[tuple[_Entry, object, str]]:
    """(entry, its tensor converted, the SHA-256 of the source tensor's bytes; "" for a scale), reading one
    source tensor (and one shard) at a time."""
    import torch
    from safetensors import safe_open

    handle = current = None
    pending_scale = None
    for e in entries:
        if e.role == "scale":
            yield e, pending_scale, ""
            continue
        if e.file != current:
            handle, current = safe_open(str(e.file), framework="pt"), e.file
        t = handle.get_tensor(e.source)
        digest = hashlib.sha256(_bytes(t)).hexdigest()
        if e.role == "fp8":
            out, pending_scale = quantize_fp8(t)
        else:
            out = t.to(torch.bfloat16) if e.dtype == "BF16" and t.is_floating_point() else t
        del t
        yield e, out, digest
        del out                  # nothing of this tensor outlives its write


def export(folder: str | Path, out: str | Path, fmt: str = "bf16", *, template_dirs=(),
           progress: Progress | None = None) -> ExportResult:
    """Write ``folder`` (a Qwen3-VL checkpoint, sharded or not) as one ComfyUI text-encoder file ``out``.

    The output is written to a ``.part`` file beside ``out`` and renamed when complete (``outputs.Staged``), so
    an interrupted export or a full disk never leaves a file ComfyUI would list, and an older ``out`` stays whole. ``weights_sha256`` in its metadata digests the source tensors (the
    same for the bf16 and the fp8 file of one checkpoint)."""

    if fmt not in FORMATS:
        raise ExportError(f"format must be one of {', '.join(FORMATS)}; got {fmt!r}")
    folder, out = Path(folder), Path(out)
    if not folder.is_dir():
        raise ExportError(f"{folder} is not a folder; give a checkpoint folder (config.json + *.safetensors)")
    notes = _check(folder, _config(folder))
    entries = plan_entries(source_tensors(folder), fmt)
    metadata = describe_source(folder, template_dirs)
    metadata[META + "format"] = "bf16" if fmt == "bf16" else f"fp8 ({QUANT_FORMAT}, per-tensor scale)"
    fp8 = sorted(e.name[:-len(".weight")] for e in entries if e.role == "fp8")
    if fp8:
        metadata["_quantization_metadata"] = json.dumps(
            {"format_version": "1.0", "layers": {layer: {"format": QUANT_FORMAT} for layer in fp8}})
    # The digest of the source weights is known only after reading them: reserve its place in the header.
    metadata[META + "weights_sha256"] = "0" * 64
    header, offset = {}, 0
    for e in entries:
        header[e.name] = {"dtype": e.dtype, "shape": list(e.shape), "data_offsets": [offset, offset + e.nbytes]}
        offset += e.nbytes
    digests: dict[str, str] = {}
    kept = f"{out} is as it was" if out.exists() else f"no file was left at {out}"
    with Staged(kept) as stage, open(stage.path(out), "wb") as fh:
        head = _header_bytes(header, metadata)
        fh.write(head)
        written = 0
        for e, t, digest in _tensors(entries):   # (not enumerate: it keeps the last item alive)
            data = _bytes(t)
            if digest:
                digests[e.source] = digest
            if len(data) != e.nbytes:
                raise ExportError(f"{e.source} in {e.file.name} is not the shape its header says")
            fh.write(memoryview(data))
            del t, data
            written += 1
            if progress is not None:
                progress(written, len(entries))
        weights = hashlib.sha256("".join(f"{k}:{digests[k]}\n" for k in sorted(digests)).encode()).hexdigest()
        metadata[META + "weights_sha256"] = weights
        final = _header_bytes(header, metadata)
        if len(final) != len(head):   # same length by construction (a 64-digit placeholder)
            raise RuntimeError("export header changed length")
        fh.seek(0)
        fh.write(final)
    return ExportResult(out, fmt, len(entries), len(fp8), out.stat().st_size, metadata, tuple(notes))


def _header_bytes(header: dict, metadata: dict[str, str]) -> bytes:
    raw = json.dumps({"__metadata__": metadata, **header}, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)            # the data starts 8-byte aligned, as safetensors writes it
    return struct.pack("<Q", len(raw)) + raw


def file_metadata(path: str | Path) -> dict[str, str]:
    """The pack's metadata of an exported file (keys without the ``rationalrewards.`` prefix)."""
    meta = read_header(path).get("__metadata__") or {}
    return {k[len(META):]: v for k, v in meta.items() if k.startswith(META)}
