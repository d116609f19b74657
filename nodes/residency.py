"""When the critic's weights move is ComfyUI's decision: the thin adapter over ``comfy.model_management``.

``CriticPatcher`` is a ``ModelPatcher`` whose model is a small holder around the Hugging Face
model (the HF model's ``device`` is a read-only property, and ComfyUI writes ``model.device``;
so we wrap instead of patching). ``comfy.model_management.load_models_gpu([patcher])`` loads the
critic like any checkpoint, and ``free_memory`` evicts it when a generator needs the VRAM.

How the weights move (host copies, pinning, movability, memory estimates) is the core's
``rationalrewards.runtime.residency`` (``models/residency.py``); host copies are pinned through
``comfy.model_management.pin_memory`` so they count against ComfyUI's pinned budget.

Quantised critics move too: bitsandbytes 8-bit / 4-bit models go whole with ``model.to``
(``ModuleMover``: evicted to host memory when the generator needs the VRAM, back for the next
critique). Critics that truly cannot move (device-mapped across devices, quantisation methods not
known to move) say so once in the log and stay resident; each critique then asks ``free_memory`` for
room for its KV cache so the generator's budget stays honest.

Newer ComfyUI (checked against upstream 0f1fa67a, 2026-08): with "dynamic VRAM" the default, a plain
``ModelPatcher`` subclass reports ``is_dynamic() == False`` and stays on the classic path;
``load_models_gpu`` then reserves pinned host memory (``pins_required``) of ``model_size()`` for it,
which is what the pinned host copy uses; ``unload_model_and_clones`` exists there but not in 0.3.75,
so ``unload`` keeps to ``free_memory(..., keep_loaded=...)``, public in both.

The residency is held on the node side: an RR_CRITIC link carries a :class:`CriticHandle` (the
core critic plus its residency), never a slot on the core's backend.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Iterator

import torch

import comfy.model_management as mm
from comfy.model_patcher import ModelPatcher

from ..models.critic.critic import Critic
from ..models.runtime.residency import (HostCopies, ModuleMover, generation_bytes, is_movable, moves_whole,
                                quantization_method, same_device)
from ..models.critic.script import AnswerScript

log = logging.getLogger("RationalRewards")


def comfy_pin(t: torch.Tensor) -> bool:
    """ComfyUI's pin_memory (counts against its pinned budget, honours --disable-pinned-memory).
    It accepts parameters only, so the host copy is viewed as one for the call."""
    return bool(mm.pin_memory(t if isinstance(t, torch.nn.Parameter) else torch.nn.Parameter(t, requires_grad=False)))


def comfy_unpin(t: torch.Tensor) -> None:
    mm.unpin_memory(t)


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
    """Where one in-process critic lives under ComfyUI's memory manager (see :class:`CriticHandle`)."""
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


def attach(model: torch.nn.Module, load_device: torch.device, keep_loaded: bool = False) -> Residency:
    """Register a loaded HF ``model`` with ComfyUI's memory manager (or, when it cannot move, keep it)."""
    offload = offload_device(load_device)
    if is_movable(model):
        pinning = load_device.type == "cuda" and offload.type == "cpu"
        host = HostCopies(model, pin=comfy_pin if pinning else None, unpin=comfy_unpin if pinning else None)
    elif moves_whole(model):
        host = ModuleMover(model)
        if not same_device(host.device, offload):   # loaded quantised on the compute device: start offloaded
            host.to(offload)
    else:
        log.warning("RationalRewards: this critic cannot move between devices (%s); it stays on %s and each "
                    "critique reserves memory for its KV cache", quantization_method(model) or "device-mapped",
                    load_device)
        return Residency(None, load_device, keep_loaded=True)
    holder = RationalRewardsCritic(model, host, device=host.device)
    return Residency(CriticPatcher(holder, load_device, offload), load_device, keep_loaded=keep_loaded)


@dataclass(frozen=True)
class CriticHandle:
    """What flows on an RR_CRITIC link: the core critic and, for an in-process checkpoint, its
    residency. Server and headless critics have none (nothing for ComfyUI to move)."""
    critic: Critic
    residency: Residency | None = None

    def with_script(self, script: AnswerScript | None) -> "CriticHandle":
        """The same critic (and residency) answering from ``script`` where it matches."""
        return replace(self, critic=self.critic.with_script(script))


@contextmanager
def resident(handle: CriticHandle, options, items: int, pixels_per_item: int) -> Iterator[None]:
    """``with resident(handle, options, n, pixels):`` around every generation a node runs.

    Critics without a residency (scripted headless, server backends) pass straight through.
    """
    if handle.residency is None:
        yield
        return
    critic = handle.critic
    need = generation_bytes(critic.backend, items, pixels_per_item, options.max_new_tokens, critic.max_pixels)
    with handle.residency.use(need):
        yield
