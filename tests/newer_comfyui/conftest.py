"""Tests that need a ComfyUI with its own Qwen3-VL (>= 0.25), run in their own pytest process:

    RR_COMFYUI_TREE=/path/to/ComfyUI-0.33 PYTHON -m pytest tests/newer_comfyui -m newer_comfyui

with a Python that has that tree's requirements (README "Tests"). Without the tree they skip, saying why.
Everything here is marked ``newer_comfyui``.
"""
from __future__ import annotations

import pytest

from tests.fixtures.native_tiny import build_native_tiny, newer_comfyui, register_tiny_size
from tests.unit.conftest import PACK_PACKAGE, _one_torch_thread, pack  # noqa: F401 (fixtures shared with unit tests)


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "newer_comfyui" in str(item.fspath):
            item.add_marker(pytest.mark.newer_comfyui)


@pytest.fixture(scope="session")
def comfy_tree():
    """The newer ComfyUI, imported on the CPU (skips the test when there is none)."""
    reason = newer_comfyui()
    if reason:
        pytest.skip(reason)
    import comfy.text_encoders.qwen3vl as qwen3vl
    return qwen3vl


@pytest.fixture
def tiny_size(comfy_tree, monkeypatch):
    """The tiny Qwen3-VL size registered with ComfyUI for this test only."""
    register_tiny_size(monkeypatch.setitem)


@pytest.fixture(scope="session")
def native_folder(comfy_tree, tmp_path_factory):
    """A sharded tiny RationalRewards checkpoint with Qwen's real vocabulary and bf16-exact weights."""
    return build_native_tiny(tmp_path_factory.mktemp("native") / "RationalRewards-tiny")


@pytest.fixture(scope="session")
def exported(native_folder, tmp_path_factory):
    """``{"bf16": path, "fp8": path}``: the tiny checkpoint through ``rationalrewards export``."""
    from rationalrewards.toolkit.export import export

    out = tmp_path_factory.mktemp("text_encoders")
    return {fmt: export(native_folder, out / f"RationalRewards-tiny_{fmt}.safetensors", fmt).path
            for fmt in ("bf16", "fp8")}
