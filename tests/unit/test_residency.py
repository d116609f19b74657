"""Residency: the core's host copies (models/residency.py, plain torch) and the ComfyUI adapter
(nodes/residency.py) under ComfyUI's real memory manager (in-process, --cpu).

ComfyUI is imported from the test tree (.comfyui/ComfyUI) with ``args.cpu`` set first; the adapter is
imported as part of the pack package, the way ComfyUI imports a custom node folder (``pack`` fixture).
"""
from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest
import torch

from rationalrewards.runtime import residency as core
from rationalrewards.backends.base import GenerationOptions
from rationalrewards.critic.critic import Item
from rationalrewards.judging.rubric import Task
from tests.comfy_server import comfy_dir, missing_comfyui

ROOT = Path(__file__).resolve().parents[2]
GREEDY = GenerationOptions(max_new_tokens=12, temperature=0)


@pytest.fixture(scope="module")
def comfy_mm():
    if not (comfy_dir() / "comfy" / "model_management.py").is_file():
        missing_comfyui(f"no ComfyUI tree at {comfy_dir()} (scripts/setup_env.sh builds it)")
    if str(comfy_dir()) not in sys.path:
        sys.path.append(str(comfy_dir()))          # appended: ComfyUI's top-level names never shadow ours
    import comfy.cli_args
    comfy.cli_args.args.cpu = True
    import comfy.model_management as mm
    assert mm.get_torch_device().type == "cpu"
    return mm


@pytest.fixture(scope="module")
def res(comfy_mm, pack):
    module = pack("nodes.residency")
    assert module.mm is comfy_mm
    return module


@pytest.fixture
def critic(tiny_models_dir):
    """A fresh tiny critic per test (the residency registers its weights)."""
    from rationalrewards.runtime.loader import load_critic
    return load_critic("tiny-qwen3vl", [tiny_models_dir], device="cpu")


def request(critic):
    from PIL import Image
    return critic.build(Item(Task.T2I, "pointwise", "a red cat", (Image.new("RGB", (64, 64), (200, 10, 10)),)))


def loaded(mm, patcher) -> bool:
    return any(m.model is patcher for m in mm.current_loaded_models)


# --- host copies (plain torch) -----------------------------------------------------------------------

class Tied(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a = torch.nn.Linear(4, 4)
        self.b = torch.nn.Linear(4, 4)
        self.b.weight = self.a.weight             # tied: counted and moved once
        self.register_buffer("scale", torch.ones(4))


def test_host_copies_are_the_cpu_weights_themselves_and_counted_once():
    m = Tied()
    ptrs = [t.data_ptr() for t in m.parameters()] + [m.scale.data_ptr()]
    host = core.HostCopies(m)
    assert host.nbytes == (16 + 4 + 4 + 4) * 4        # a.weight, a.bias, b.bias, scale
    assert host.to("cpu") >= 0 and host.device.type == "cpu"
    assert [t.data_ptr() for t in m.parameters()] + [m.scale.data_ptr()] == ptrs   # nothing copied
    for t in host.tensors:                           # pretend an accelerator copy replaced the weights
        t.data = t.data.clone()
    host.to("cpu")                                   # offloading points back at the kept host copies
    assert [t.data_ptr() for t in m.parameters()] + [m.scale.data_ptr()] == ptrs
    assert m.b.weight is m.a.weight


def test_pinning_falls_back_to_a_private_copy_then_gives_up():
    m = torch.nn.Linear(8, 8)
    calls: list[int] = []

    def pin_only_fresh(t):                           # in-place pin fails (file-backed), a fresh copy pins
        calls.append(t.data_ptr())
        return len(calls) % 2 == 0
    host = core.HostCopies(m, pin=pin_only_fresh, unpin=lambda t: None)
    original = m.weight.data_ptr()
    host._host_copy(0, pin=True)
    assert host.pinned_bytes == m.weight.numel() * 4 and m.weight.data_ptr() != original
    assert torch.equal(host.host[0], m.weight.data)
    never = core.HostCopies(torch.nn.Linear(8, 8), pin=lambda t: False, unpin=lambda t: None)
    for _ in range(12):
        never._pinned_idx.discard(0)
        never._host_copy(0, pin=True)
    assert never.pinned_bytes == 0 and never._pin_failures == 8     # stops trying: budget spent
    unpinned: list[int] = []
    h = core.HostCopies(torch.nn.Linear(2, 2), pin=lambda t: True, unpin=lambda t: unpinned.append(1))
    h._host_copy(0, pin=True)
    h.release()
    assert unpinned == [1] and h.pinned_bytes == 0


def test_movable_decision():
    plain = torch.nn.Linear(2, 2)
    assert core.is_movable(plain)
    for attr, value in [("is_quantized", True), ("is_loaded_in_8bit", True), ("is_loaded_in_4bit", True),
                        ("hf_quantizer", object()), ("hf_device_map", {"a": 0, "b": "cpu"})]:
        m = torch.nn.Linear(2, 2)
        setattr(m, attr, value)
        assert not core.is_movable(m), attr
    one_device = torch.nn.Linear(2, 2)
    one_device.hf_device_map = {"a": 0, "b": 0}
    assert core.is_movable(one_device)


def test_inference_estimate_for_the_8b_shape():

    class Cfg:
        hidden_size, intermediate_size, num_hidden_layers = 4096, 12288, 36
        num_attention_heads, num_key_value_heads, head_dim, vocab_size = 32, 8, 128, 151936

    class Model:
        config, dtype = Cfg(), torch.bfloat16
    kv_per_token = 2 * 36 * 8 * 128 * 2                 # 144 KiB
    need = core.inference_bytes(Model(), batch=16, prompt_tokens=1476, new_tokens=2048)
    assert kv_per_token * 16 * (1476 + 2048) < need < 2 * kv_per_token * 16 * (1476 + 2048)

    class Proc:
        class image_processor:
            patch_size, merge_size = 16, 2
    assert core.prompt_tokens(Proc(), 1024 * 1024) == 640 + 1024
    assert core.prompt_tokens(Proc(), 1024 * 1024, max_pixels=512 * 512) == 640 + 256


CRITIC_NODES = ("common.py", "critique.py", "compare.py", "rank.py", "load_critic.py", "loop.py")


def test_the_pack_moves_weights_only_through_residency():
    """Cheap guards (as in the VLM pack we learn from): no empty_cache/installs in any node file, and the
    critic's nodes never move tensors to the GPU themselves (residency.py does)."""
    for path in sorted((ROOT / "nodes").glob("*.py")):
        text = path.read_text()
        assert "empty_cache" not in text and "subprocess" not in text and "pip install" not in text, path.name
        if path.name in CRITIC_NODES:
            assert not re.search(r"\.cuda\(|\.to\(\s*['\"]cuda|torch\.cuda\.", text), path.name


# --- under ComfyUI's memory manager -------------------------------------------------------------------

def test_load_use_and_release_through_load_models_gpu(res, comfy_mm, critic, caplog):
    mm = comfy_mm
    before = critic.backend.generate([request(critic)], GREEDY)
    r = res.attach(critic.backend.model, res.compute_device("auto"), keep_loaded=False)
    assert not hasattr(critic.backend, "residency"), "the residency is held on the node side"
    assert r.movable and r.load_device.type == "cpu"
    assert r.patcher.model_size() == sum(p.numel() * p.element_size() for p in critic.backend.model.parameters()) \
        + sum(b.numel() * b.element_size() for b in critic.backend.model.buffers())
    with caplog.at_level("INFO"):
        with r.use(1 << 20):
            assert loaded(mm, r.patcher)
            assert mm.current_loaded_models[0].model is r.patcher
            inside = critic.backend.generate([request(critic)], GREEDY)
        assert not loaded(mm, r.patcher), "keep_loaded=False hands the memory back after the block"
    assert "RationalRewards critic on cpu" in caplog.text and "offloaded" in caplog.text
    assert inside == before


def test_keep_loaded_survives_reuse_and_is_evicted_by_comfyui(res, comfy_mm, critic, monkeypatch):
    mm = comfy_mm
    r = res.attach(critic.backend.model, torch.device("cpu"), keep_loaded=True)
    moves: list[str] = []
    real_to = r.patcher.model.host.to
    monkeypatch.setattr(r.patcher.model.host, "to", lambda d, pin=None: moves.append(str(d)) or real_to(d, pin))
    first = None
    for _ in range(2):
        with r.use():
            out = critic.backend.generate([request(critic)], GREEDY)
            first = first or out
            assert out == first
    assert loaded(mm, r.patcher)
    assert moves == ["cpu"], "a loaded critic is not offloaded and reloaded on every use"
    mm.free_memory(1e30, torch.device("cpu"))          # what a generator's load (or POST /free) does
    assert not loaded(mm, r.patcher) and r.patcher.loaded_size() == 0
    with r.use():                                      # ... and it comes back for the next critique
        assert critic.backend.generate([request(critic)], GREEDY) == first
    assert loaded(mm, r.patcher)
    mm.unload_all_models()
    assert not loaded(mm, r.patcher)


def test_release_happens_on_errors_too(res, comfy_mm, critic):
    r = res.attach(critic.backend.model, torch.device("cpu"), keep_loaded=False)
    with pytest.raises(RuntimeError, match="boom"):
        with r.use():
            raise RuntimeError("boom")
    assert not loaded(comfy_mm, r.patcher)


def test_resident_helper_sizes_the_headroom(res, comfy_mm, critic, monkeypatch):
    seen: list[int] = []
    r = res.attach(critic.backend.model, torch.device("cpu"))
    monkeypatch.setattr(comfy_mm, "load_models_gpu", lambda models, memory_required=0, **k: seen.append(memory_required))
    handle = res.CriticHandle(critic, r)
    with res.resident(handle, GenerationOptions(max_new_tokens=64), items=3, pixels_per_item=64 * 64):
        pass
    with res.resident(handle, GenerationOptions(max_new_tokens=512), items=3, pixels_per_item=64 * 64):
        pass
    assert len(seen) == 2 and 0 < seen[0] < seen[1]
    assert handle.with_script(None).residency is r          # a replay critic shares the residency
    with res.resident(res.CriticHandle(critic), GREEDY, items=1, pixels_per_item=1):   # no residency: straight through
        pass
    assert len(seen) == 2


def test_quantised_critic_stays_and_reserves_vram(res, comfy_mm, critic, monkeypatch):
    critic.backend.model.is_quantized = True
    r = res.attach(critic.backend.model, torch.device("cuda"), keep_loaded=False)   # decision logic only: no GPU used
    assert r.patcher is None and not r.movable and r.keep_loaded
    freed: list[tuple[float, torch.device]] = []
    monkeypatch.setattr(comfy_mm, "free_memory", lambda need, dev, keep_loaded=[]: freed.append((need, dev)))
    monkeypatch.setattr(comfy_mm, "load_models_gpu", lambda *a, **k: pytest.fail("a quantised critic cannot move"))
    with r.use(123):
        pass
    assert freed == [(123 + comfy_mm.minimum_inference_memory(), torch.device("cuda"))]
    assert not r.is_loaded()


def test_reregistering_keeps_weights_in_place(res, critic, monkeypatch):
    r = res.attach(critic.backend.model, torch.device("cpu"))
    r.patcher.load(torch.device("cpu"))
    monkeypatch.setattr(r.patcher.model.host, "to", lambda *a, **k: pytest.fail("moved on a re-registration"))
    assert r.patcher.detach(unpatch_all=False) is r.patcher.model
    assert r.patcher.partially_load(torch.device("cpu"), 1e32) == 0       # already loaded: nothing to do
    assert r.patcher.partially_unload(torch.device("cpu"), 1 << 20) == 0  # nothing partial: ComfyUI detaches


# --- quantised critics (bitsandbytes) move whole -------------------------------------------------------

def test_moves_whole_decision():
    class Cfg:
        def __init__(self, qc):
            self.quantization_config = qc

    def model(qc=None, device_map=None):
        m = torch.nn.Linear(2, 2)
        m.config = Cfg(qc)
        m.is_quantized = qc is not None
        if device_map:
            m.hf_device_map = device_map
        return m

    assert core.moves_whole(model({"quant_method": "bitsandbytes", "load_in_4bit": True}))
    assert not core.moves_whole(model({"quant_method": "bitsandbytes"}, {"a": 0, "b": "cpu"}))   # spread out
    for method in ("awq", "gptq", "fp8", "compressed-tensors"):
        assert not core.moves_whole(model({"quant_method": method})), method
        assert core.quantization_method(model({"quant_method": method})) == method
    assert not core.moves_whole(model())
    assert not core.is_movable(model({"quant_method": "bitsandbytes"}))     # never per-tensor host copies


@pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is None, reason="bitsandbytes (the [quant] extra)")
@pytest.mark.parametrize("q", ["int8", "4bit"])
def test_quantised_critic_is_evicted_and_reloaded_by_comfyui(res, comfy_mm, tiny_wide_dir, q, caplog):
    from rationalrewards.runtime.loader import load_critic
    mm = comfy_mm
    critic = load_critic("tiny-wide", [tiny_wide_dir], device="cpu", quantization=q)
    before = critic.backend.generate([request(critic)], GREEDY)
    r = res.attach(critic.backend.model, res.compute_device("auto"), keep_loaded=True)
    assert r.movable and type(r.patcher.model.host).__name__ == "ModuleMover"   # the pack imports its own copy
    assert r.patcher.model_size() == critic.backend.model.get_memory_footprint()
    with caplog.at_level("INFO"):
        with r.use(1 << 20):
            assert loaded(mm, r.patcher)
            inside = critic.backend.generate([request(critic)], GREEDY)
        assert loaded(mm, r.patcher), "keep_loaded: stays registered after the block"
        mm.free_memory(1e30, r.load_device)                 # a generator needs everything: ComfyUI evicts
        assert not loaded(mm, r.patcher)
        with r.use(1 << 20):                                # back for the next critique
            after = critic.backend.generate([request(critic)], GREEDY)
    assert "RationalRewards critic offloaded" in caplog.text
    assert inside == before == after
    res.unload(r.patcher)
