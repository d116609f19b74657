"""Load options of the in-process critic that need torch but not transformers.

Kept apart from ``transformers_backend`` so the node that offers them (Load Critic) imports without
transformers: an unsupported transformers then fails one node with one message, not the whole pack.
"""
from __future__ import annotations

import importlib.util

import torch

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
ATTENTION = ("sdpa", "eager", "flash_attention_2")
DECODING = ("auto", "plain", "static", "compiled")


def pick_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for but no CUDA GPU is available; choose 'auto' or 'cpu'")
    return torch.device(device)


def resolve_decoding(decoding: str, device: torch.device) -> str:
    """What ``auto`` means on ``device``: compiled on CUDA with Triton, plain elsewhere."""
    if decoding != "auto":
        return decoding
    if device.type == "cuda" and importlib.util.find_spec("triton") is not None:
        return "compiled"
    return "plain"


def pick_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of auto, {', '.join(DTYPES)}; got {dtype!r}")
    return DTYPES[dtype]


def available_attention() -> list[str]:
    names = ["sdpa", "eager"]
    if importlib.util.find_spec("flash_attn") is not None:
        names.append("flash_attention_2")
    return names
