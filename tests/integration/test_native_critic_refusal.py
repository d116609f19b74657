"""The native critic on CI's ComfyUI 0.3.75, which has no Qwen3-VL of its own: the loader is listed (a
workflow that uses it opens everywhere) and refuses with the ComfyUI version it needs."""
from __future__ import annotations

import pytest

from tests.comfy_server import Graph, execution_error

pytestmark = pytest.mark.integration


def test_the_native_loader_refuses_naming_the_comfyui_version_it_needs(comfy_server, models_dir):
    folder = models_dir.root / "text_encoders"
    folder.mkdir(exist_ok=True)
    (folder / "RationalRewards-8B-T2I_fp8_scaled.safetensors").write_bytes(b"\0" * 16)   # listed, never read
    info = comfy_server.object_info("RR_LoadNativeCritic")["RR_LoadNativeCritic"]
    assert "ComfyUI 0.25 or newer" in info["description"]
    assert "RationalRewards-8B-T2I_fp8_scaled.safetensors" in info["input"]["required"]["text_encoder"][1]["options"]
    g = Graph()
    critic = g.node("RR_LoadNativeCritic", text_encoder="RationalRewards-8B-T2I_fp8_scaled.safetensors",
                    max_pixels=-1)
    img = g.node("EmptyImage", width=64, height=64, batch_size=1, color=comfy_server.fresh_seed() % 0xFFFFFF)
    g.node("RR_CritiqueImage", critic=critic, image=img, prompt="a cat", weights="equal", max_new_tokens=16,
           temperature=0.0, seed=0)
    error = execution_error(comfy_server.run(g, timeout=30, check=False))
    assert error["node_type"] == "RR_LoadNativeCritic"
    message = error["exception_message"]
    assert "Load Critic, ComfyUI native: the native critic needs ComfyUI 0.25 or newer" in message
    assert "this ComfyUI is 0.3.75" in message and "Load Critic" in message
