"""Quantised critics: what Load Critic's ``quantization`` asks for, and what a folder already carries.

``int8`` (LLM.int8) and ``4bit`` (NF4 with double quantisation) go through transformers'
``BitsAndBytesConfig``; bitsandbytes is an optional extra (``pip install "bitsandbytes>=0.50"``, or
``pip install -e ".[quant]"`` in the pack's folder: the pack is not on PyPI). BENCHMARKS.md says why
bitsandbytes and not torchao. A folder whose config already has a ``quantization_config`` (bitsandbytes, AWQ, GPTQ, FP8, compressed-tensors) is
loaded as it is; ``quantization`` is then ignored and the loader says what it found.
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from .compat import DependencyError
from .memory_plan import QUANTIZATIONS, describe_prequantized

__all__ = ["QUANTIZATIONS", "found_quantization", "quantization_config", "require_method"]
BNB_HINT = 'pip install "bitsandbytes>=0.50" with ComfyUI\'s Python (or, in the pack\'s folder, pip install -e ".[quant]")'
# What transformers needs installed to load a pre-quantised folder of each method.
METHOD_PACKAGES = {"bitsandbytes": ("bitsandbytes", BNB_HINT),
                   "awq": ("awq", 'pip install autoawq'),
                   "gptq": ("gptqmodel", 'pip install gptqmodel'),
                   "compressed-tensors": ("compressed_tensors", 'pip install compressed-tensors')}


def found_quantization(path: str | Path) -> str:
    """'' for a plain checkpoint folder, else a description of its own quantisation."""
    cfg_file = Path(path) / "config.json"
    if not cfg_file.is_file():
        return ""
    return describe_prequantized(json.loads(cfg_file.read_text()))


def _method(path: str | Path) -> str:
    cfg = json.loads((Path(path) / "config.json").read_text())
    q = cfg.get("quantization_config") or (cfg.get("text_config") or {}).get("quantization_config") or {}
    return str(q.get("quant_method", ""))


def require_method(path: str | Path) -> None:
    """Raise DependencyError when the package a pre-quantised folder needs is missing."""
    method = _method(path)
    if method in METHOD_PACKAGES:
        module, hint = METHOD_PACKAGES[method]
        if importlib.util.find_spec(module) is None:
            raise DependencyError(f"{Path(path).name} is already quantised ({found_quantization(path)}); loading it "
                                  f"needs the {module} package: {hint}")


def quantization_config(choice: str, compute_dtype):
    """transformers' quantisation config for ``choice`` (None for ``none``); bitsandbytes must be installed."""
    if choice not in QUANTIZATIONS:
        raise ValueError(f"quantization must be one of {', '.join(QUANTIZATIONS)}; got {choice!r}")
    if choice == "none":
        return None
    if importlib.util.find_spec("bitsandbytes") is None:
        raise DependencyError(f"quantize weights {choice} needs the bitsandbytes package, which is not installed: "
                              f"{BNB_HINT}; or set quantize weights to none")
    from transformers import BitsAndBytesConfig

    if choice == "int8":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=compute_dtype)
