"""Where the critic's weights live is ComfyUI's decision: the one module that moves them.

``CriticPatcher`` is a ``ModelPatcher`` whose model is a small holder around the Hugging Face
model (the HF model's ``device`` is a read-only property, and ComfyUI writes ``model.device``;
so we wrap instead of patching). ``comfy.model_management.load_models_gpu([patcher])`` loads the
critic like any checkpoint, and ``free_memory`` evicts it when a generator needs the VRAM.

Offloading keeps one host copy of every weight for the critic's lifetime, pinned through
``comfy.model_management.pin_memory`` when CUDA is in use: evicting drops the GPU copy (no copy
back, no allocation), and loading is one host->device copy at PCIe speed. The whole model moves
or nothing does: a transformers model cannot run half on the CPU the way ComfyUI's cast-weight
layers can.

Quantised (bitsandbytes) or device-mapped critics cannot move; they stay resident, and each
critique asks ``free_memory`` for room for its KV cache so the generator's budget stays honest.

Import-safe without ComfyUI (the benchmark loads this file by path and uses ``HostCopies``);
``CriticPatcher`` and ``attach`` need ComfyUI.
"""
from __future__ import annotations

import logging
import time
import weakref
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

import torch

try:
    import comfy.model_management as mm
    from comfy.model_patcher import ModelPatcher
except ImportError:          # headless: the benchmark and tools use HostCopies only
    mm = None
    ModelPatcher = object

log = logging.getLogger("RationalRewards")
PinFn = Callable[[torch.Tensor], bool]
UnpinFn = Callable[[torch.Tensor], object]


def torch_pin(t: torch.Tensor) -> bool:
    """Page-lock ``t``'s memory in place (what ComfyUI's pin_memory does, without its budget)."""
    if not torch.cuda.is_available() or t.device.type != "cpu" or not t.is_contiguous() or t.numel() == 0:
        return False
    return int(torch.cuda.cudart().cudaHostRegister(t.data_ptr(), t.numel() * t.element_size(), 0)) == 0


def torch_unpin(t: torch.Tensor) -> None:
    torch.cuda.cudart().cudaHostUnregister(t.data_ptr())


def comfy_pin(t: torch.Tensor) -> bool:
    """ComfyUI's pin_memory (counts against its pinned budget, honours --disable-pinned-memory).
    It accepts parameters only, so the host copy is viewed as one for the call."""
    return bool(mm.pin_memory(t if isinstance(t, torch.nn.Parameter) else torch.nn.Parameter(t, requires_grad=False)))


def comfy_unpin(t: torch.Tensor) -> None:
    mm.unpin_memory(t)


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
    """False for models a plain ``.to(device)`` would break: bitsandbytes-quantised or device-mapped."""
    if getattr(model, "is_quantized", False) or getattr(model, "hf_quantizer", None) is not None:
        return False
    if getattr(model, "is_loaded_in_8bit", False) or getattr(model, "is_loaded_in_4bit", False):
        return False
    device_map = getattr(model, "hf_device_map", None)
    return not (isinstance(device_map, dict) and len({str(d) for d in device_map.values()}) > 1)


class RationalRewardsCritic(torch.nn.Module):
    """What ComfyUI's memory manager holds: the HF model plus the mutable ``device`` it writes.
    (Named for ComfyUI's log lines: "Requested to load RationalRewardsCritic".)"""

    def __init__(self, model: torch.nn.Module, host: HostCopies, device: torch.device):
        super().__init__()
        self.hf = model
        self.host = host
        self.device = device

    def get_dtype(self) -> torch.dtype:
        return self.hf.dtype


class CriticPatcher(ModelPatcher):
    """All-or-nothing residency for a transformers critic under ``comfy.model_management``."""

    def __init__(self, model: RationalRewardsCritic, load_device: torch.device, offload_device: torch.device,
                 size: int = 0, weight_inplace_update: bool = False):
        if mm is None:
            raise RuntimeError("CriticPatcher needs ComfyUI (comfy.model_patcher)")
        super().__init__(model, load_device, offload_device, size=size or model.host.nbytes,
                         weight_inplace_update=weight_inplace_update)

    def model_size(self) -> int:
        return self.model.host.nbytes

    def model_dtype(self) -> torch.dtype:
        return self.model.get_dtype()

    def load(self, device_to=None, lowvram_model_memory=0, force_patch_weights=False, full_load=False):
        device_to = torch.device(device_to or self.load_device)
        seconds = self.model.host.to(device_to)
        self.model.device = device_to
        self.model.model_loaded_weight_memory = self.model_size()
        self.model.model_lowvram = False
        self.model.lowvram_patch_counter = 0
        log.info("RationalRewards critic on %s (%.0f MB, %.0f MB pinned host copy) in %.3f s", device_to,
                 self.model_size() / 2**20, self.model.host.pinned_bytes / 2**20, seconds)

    def partially_load(self, device_to, extra_memory=0, force_patch_weights=False):
        if self.loaded_size() >= self.model_size() and same_device(self.model.device, torch.device(device_to)):
            return 0
        self.load(device_to)
        return self.model_size()

    def partially_unload(self, device_to, memory_to_free=0, force_patch_weights=False):
        return 0   # nothing partial: ComfyUI then detaches the whole critic

    def detach(self, unpatch_all=True):
        if not unpatch_all:   # load_models_gpu re-registering a loaded model: the weights stay where they are
            return self.model
        seconds = self.model.host.to(self.offload_device)
        self.model.device = self.offload_device
        self.model.model_loaded_weight_memory = 0
        log.info("RationalRewards critic offloaded to %s in %.3f s", self.offload_device, seconds)
        return self.model


@dataclass
class Residency:
    """The node side's handle on one loaded critic (kept on ``backend.residency``)."""
    patcher: CriticPatcher | None        # None: the critic cannot move (quantised / device-mapped)
    load_device: torch.device
    keep_loaded: bool = False

    @property
    def movable(self) -> bool:
        return self.patcher is not None

    @contextmanager
    def use(self, memory_required: int = 0) -> Iterator[None]:
        """The critic on its compute device for the block, with ``memory_required`` bytes of headroom."""
        if self.movable:
            mm.load_models_gpu([self.patcher], memory_required=memory_required, force_full_load=True)
        elif self.load_device.type != "cpu":
            mm.free_memory(memory_required + mm.minimum_inference_memory(), self.load_device)
        try:
            yield
        finally:
            if self.movable and not self.keep_loaded:
                unload(self.patcher)

    def is_loaded(self) -> bool:
        return self.movable and any(m.model is self.patcher for m in mm.current_loaded_models)


def unload(patcher: CriticPatcher) -> bool:
    """Hand the critic's memory back to ComfyUI now.

    ComfyUI has no public per-model unload, so this asks its public ``free_memory`` for more memory
    than any device has while keeping every other loaded model: only the critic is evicted, by
    ComfyUI's own bookkeeping (its list is only read here, never edited).
    """
    mine = [m for m in mm.current_loaded_models if m.model is patcher]
    if not mine:
        return False
    others = [m for m in mm.current_loaded_models if m.model is not patcher]
    mm.free_memory(float("inf"), mine[0].device, keep_loaded=others)
    return True


def compute_device(choice: str) -> torch.device:
    """The device critiques run on: ``auto`` follows ComfyUI (``--cpu`` included)."""
    if choice == "auto":
        return mm.get_torch_device()
    if choice == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("device 'cuda' was asked for but no CUDA GPU is available; choose 'auto' or 'cpu'")
        dev = mm.get_torch_device()
        return dev if dev.type == "cuda" else torch.device("cuda", torch.cuda.current_device())
    return torch.device(choice)


def offload_device(load_device: torch.device) -> torch.device:
    return mm.unet_offload_device() if load_device.type != "cpu" else load_device


def attach(backend, load_device: torch.device, keep_loaded: bool = False) -> Residency:
    """Register ``backend.model`` with ComfyUI's memory manager; sets and returns ``backend.residency``."""
    model = backend.model
    if not is_movable(model):
        residency = Residency(None, load_device, keep_loaded=True)
    else:
        offload = offload_device(load_device)
        pinning = load_device.type == "cuda" and offload.type == "cpu"
        host = HostCopies(model, pin=comfy_pin if pinning else None, unpin=comfy_unpin if pinning else None)
        holder = RationalRewardsCritic(model, host, device=host.device)
        residency = Residency(CriticPatcher(holder, load_device, offload), load_device, keep_loaded=keep_loaded)
    backend.residency = residency
    return residency


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


@contextmanager
def resident(critic, options, items: int, pixels_per_item: int) -> Iterator[None]:
    """``with resident(critic, options, n, pixels):`` around every generation a node runs.

    Critics without a residency (headless, scripted, server backends) pass straight through.
    """
    backend = critic.backend
    residency: Residency | None = getattr(backend, "residency", None)
    if residency is None or mm is None:
        yield
        return
    batch = max(1, min(items, int(getattr(backend, "batch_size", 1))))
    need = inference_bytes(backend.model, batch, prompt_tokens(backend.processor, pixels_per_item, critic.max_pixels),
                           options.max_new_tokens)
    with residency.use(need):
        yield
