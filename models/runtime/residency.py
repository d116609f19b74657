"""How a critic's weights move: host copies, pinning, movability and memory estimates (torch only).

This is the mechanics half of residency; *when* weights move is the host application's decision
(in ComfyUI: ``nodes/residency.py`` over ``comfy.model_management``). Nothing here imports ComfyUI,
so the benchmark and headless drivers use the same code as the nodes.

Offloading keeps one host copy of every weight for the critic's lifetime, optionally pinned:
evicting drops the accelerator copy (no copy back, no allocation), and loading is one host->device
copy at PCIe speed. The whole model moves or nothing does: a transformers model cannot run half on
the CPU. Quantised (bitsandbytes) or device-mapped models cannot move at all (:func:`is_movable`).
"""
from __future__ import annotations

import time
import weakref
from typing import Callable

import torch

PinFn = Callable[[torch.Tensor], bool]
UnpinFn = Callable[[torch.Tensor], object]


def torch_pin(t: torch.Tensor) -> bool:
    """Page-lock ``t``'s memory in place (what ComfyUI's pin_memory does, without its budget)."""
    if not torch.cuda.is_available() or t.device.type != "cpu" or not t.is_contiguous() or t.numel() == 0:
        return False
    return int(torch.cuda.cudart().cudaHostRegister(t.data_ptr(), t.numel() * t.element_size(), 0)) == 0


def torch_unpin(t: torch.Tensor) -> None:
    """Undo :func:`torch_pin`."""
    torch.cuda.cudart().cudaHostUnregister(t.data_ptr())


class HostCopies:
    """Moves every parameter and buffer of ``model`` between a host copy and a compute device.

    The host copy is made once (the CPU weights themselves when the model starts on the CPU) and
    kept: ``to(cpu)`` re-points the weights at it, ``to(cuda)`` copies from it. ``pin`` page-locks
    host copies (only used when moving to CUDA); a copy that cannot be pinned stays pageable.
    """

    def __init__(self, model: torch.nn.Module, pin: PinFn | None = None, unpin: UnpinFn | None = None):
        self.tensors = list({id(t): t for t in list(model.parameters()) + list(model.buffers())}.values())
        self.host: list[torch.Tensor | None] = [None] * len(self.tensors)
        self.pin, self.unpin = pin, unpin
        self.pinned: list[torch.Tensor] = []
        self._pinned_idx: set[int] = set()
        self._pin_failures = 0
        self.nbytes = sum(t.numel() * t.element_size() for t in self.tensors)
        self._finalizer = weakref.finalize(self, HostCopies._release, self.pinned, unpin)

    @property
    def device(self) -> torch.device:
        return self.tensors[0].device if self.tensors else torch.device("cpu")

    @property
    def pinned_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.pinned)

    def _host_copy(self, i: int, pin: bool) -> torch.Tensor:
        host = self.host[i]
        if host is None:
            t = self.tensors[i].data
            host = t if t.device.type == "cpu" else torch.empty_like(t, device="cpu").copy_(t)
            self.host[i] = host
        if pin and self.pin is not None and i not in self._pinned_idx and self._pin_failures < 8:
            if self.pin(host):
                self.pinned.append(host)
                self._pinned_idx.add(i)
            else:
                # Weights loaded from safetensors may be file-backed mappings that cannot be page-locked:
                # pin a private copy instead. Repeated failures mean the pinned budget is spent.
                fresh = torch.empty_like(host, device="cpu").copy_(host)
                if self.pin(fresh):
                    self.pinned.append(fresh)
                    self._pinned_idx.add(i)
                    if self.tensors[i].device.type == "cpu":
                        self.tensors[i].data = fresh
                    self.host[i] = host = fresh
                else:
                    self._pin_failures += 1
        return host

    def to(self, device: torch.device | str, pin: bool | None = None) -> float:
        """Put every weight on ``device``; returns the seconds it took (synchronised on CUDA)."""
        device = torch.device(device)
        t0 = time.perf_counter()
        pin = device.type == "cuda" if pin is None else pin
        for i, t in enumerate(self.tensors):
            if device.type == "cpu":
                t.data = self._host_copy(i, pin=False)     # no copy: the host copy is kept
            elif same_device(t.device, device):
                continue
            else:
                host = self._host_copy(i, pin=pin) if t.device.type == "cpu" else t.data
                t.data = host.to(device, non_blocking=True)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - t0

    def release(self) -> None:
        """Unpin the host copies (also done when this object is collected)."""
        self._finalizer()

    @staticmethod
    def _release(pinned: list[torch.Tensor], unpin: UnpinFn | None) -> None:
        if unpin is not None:
            for t in pinned:
                try:
                    unpin(t)
                except Exception:   # interpreter shutdown: nothing left to leak into
                    pass
        pinned.clear()


def same_device(a: torch.device, b: torch.device) -> bool:
    """``cuda`` and ``cuda:0`` are the same place when the current device is 0."""
    if a.type != b.type:
        return False
    if a.type != "cuda" or a.index == b.index:
        return True
    current = torch.cuda.current_device()
    return (a.index if a.index is not None else current) == (b.index if b.index is not None else current)


def is_movable(model: torch.nn.Module) -> bool:
    """True when per-tensor host copies (:class:`HostCopies`) can move the model: plain weights on one
    device. Quantised models keep scales / quantisation state beside their packed weights (see
    :func:`moves_whole`); device-mapped ones span several devices."""
    if getattr(model, "is_quantized", False) or getattr(model, "hf_quantizer", None) is not None:
        return False
    if getattr(model, "is_loaded_in_8bit", False) or getattr(model, "is_loaded_in_4bit", False):
        return False
    return not _device_mapped(model)


def _device_mapped(model: torch.nn.Module) -> bool:
    device_map = getattr(model, "hf_device_map", None)
    return isinstance(device_map, dict) and len({str(d) for d in device_map.values()}) > 1


def quantization_method(model: torch.nn.Module) -> str:
    """'' for a plain model, else its transformers quantisation method (``bitsandbytes``, ``awq``, ...)."""
    cfg = getattr(getattr(model, "config", None), "quantization_config", None)
    if cfg is None:
        quantizer = getattr(model, "hf_quantizer", None)
        cfg = getattr(quantizer, "quantization_config", None)
    if cfg is None:
        return "bitsandbytes" if (getattr(model, "is_loaded_in_8bit", False)
                                  or getattr(model, "is_loaded_in_4bit", False)) else ""
    method = cfg.get("quant_method") if isinstance(cfg, dict) else getattr(cfg, "quant_method", "")
    return str(getattr(method, "value", method) or "")


def moves_whole(model: torch.nn.Module) -> bool:
    """Quantised models that ``model.to(device)`` moves correctly: bitsandbytes 8-bit and 4-bit (current
    bitsandbytes carries the packed weights, scales and quantisation state with each parameter's own
    ``.to``; tested on CPU). Other methods (AWQ, GPTQ, FP8 kernels) are not known to, and stay put."""
    return quantization_method(model) == "bitsandbytes" and not _device_mapped(model)


class ModuleMover:
    """The :class:`HostCopies` interface for models that only move whole (``model.to``): quantised critics.

    No host copy is kept: offloading copies the packed weights to host memory (small: 4-bit weights are a
    quarter of bf16) and swapping in copies them back. Nothing is pinned.
    """

    def __init__(self, model: torch.nn.Module):
        self.model = model
        footprint = getattr(model, "get_memory_footprint", None)
        self.nbytes = int(footprint()) if callable(footprint) else sum(
            t.numel() * t.element_size() for t in list(model.parameters()) + list(model.buffers()))
        self.pinned_bytes = 0

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def to(self, device: torch.device | str, pin: bool | None = None) -> float:
        """Move the whole model; returns the seconds it took (synchronised on CUDA)."""
        device = torch.device(device)
        t0 = time.perf_counter()
        if not same_device(self.device, device):
            self.model.to(device)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - t0

    def release(self) -> None:
        """Nothing pinned, nothing to release (the :class:`HostCopies` interface)."""


def inference_bytes(model: torch.nn.Module, batch: int, prompt_tokens: int, new_tokens: int) -> int:
    """A generous estimate of the memory one generation needs besides the weights: KV cache for the
    whole budget, the prefill's widest activations and float32 logits."""
    cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    heads = getattr(cfg, "num_attention_heads", 1)
    kv_heads = getattr(cfg, "num_key_value_heads", None) or heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
    elt = torch.finfo(model.dtype).bits // 8 if model.dtype.is_floating_point else 2
    kv = 2 * cfg.num_hidden_layers * kv_heads * head_dim * elt * batch * (prompt_tokens + new_tokens)
    prefill = batch * prompt_tokens * (4 * cfg.hidden_size + 2 * getattr(cfg, "intermediate_size", 0)) * elt
    logits = 4 * batch * cfg.vocab_size * 4
    return int(kv + prefill + logits)


def prompt_tokens(processor, pixels_per_item: int, max_pixels: int | None = None, text_tokens: int = 640) -> int:
    """Prompt length estimate for one item: image tokens from its pixels (Qwen-VL: one token per
    (patch*merge)^2 pixels) plus the template's text."""
    ip = getattr(processor, "image_processor", None)
    side = getattr(ip, "patch_size", 16) * getattr(ip, "merge_size", 2)
    pixels = pixels_per_item if not max_pixels else min(pixels_per_item, max_pixels)
    return text_tokens + pixels // (side * side)




def generation_bytes(backend, items: int, pixels_per_item: int, new_tokens: int,
                     max_pixels: int | None = None) -> int:
    """Headroom one call of ``backend`` needs for ``items`` images of ``pixels_per_item`` pixels:
    :func:`inference_bytes` at the batch the backend actually runs."""
    batch = max(1, min(items, backend.batch_size))
    return inference_bytes(backend.model, batch, prompt_tokens(backend.processor, pixels_per_item, max_pixels),
                           new_tokens)
