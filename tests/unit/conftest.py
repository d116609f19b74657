"""Fixtures shared by the unit tests of the core (``rationalrewards`` = ``models/``).

The tiny random-weight critics are built once per session (both families) into a
temporary "models" folder and loaded through the pack's real loader.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:          # so `tests.fixtures.tiny_critic` imports whatever the cwd
    sys.path.insert(0, str(ROOT))

FAMILIES = ("qwen3vl", "qwen25vl")


def critic_folder(family: str) -> str:
    return f"tiny-{family}"


@pytest.fixture(scope="session")
def tiny_models_dir(tmp_path_factory) -> Path:
    """A models folder holding ``tiny-qwen3vl`` and ``tiny-qwen25vl`` checkpoints."""
    from tests.fixtures.tiny_critic import build_tiny_critic

    root = tmp_path_factory.mktemp("critic_models")
    for family in FAMILIES:
        build_tiny_critic(root / critic_folder(family), family=family)
    return root


_LOADED: dict = {}


@pytest.fixture(scope="session")
def load_tiny(tiny_models_dir):
    """``load_tiny(family)`` -> a Critic loaded (once per session) by ``loader.load_critic``."""
    from rationalrewards.runtime.loader import load_critic

    def _load(family: str):
        if family not in _LOADED:
            _LOADED[family] = load_critic(critic_folder(family), [tiny_models_dir])
        return _LOADED[family]
    return _load


@pytest.fixture(params=FAMILIES)
def tiny_critic(request, load_tiny):
    """The tiny critic of each family in turn."""
    return load_tiny(request.param)


@pytest.fixture(scope="session")
def qwen3_critic(load_tiny):
    return load_tiny("qwen3vl")


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """The tiny models are fastest single-threaded, and on a shared 2-core machine intra-op threads
    oversubscribe badly (20x slower under load). Restored after each unit test."""
    try:
        import torch
    except ImportError:      # pragma: no cover
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


PACK_PACKAGE = "rr_pack"


@pytest.fixture(scope="session")
def pack(tmp_path_factory):
    """``pack("nodes.residency")`` -> that module of this checkout imported as a package, the way ComfyUI
    imports a custom node folder (its folder name is not a Python identifier, so a link named
    ``rr_pack`` stands in for it). Nothing is loaded by file path. The node side imports ComfyUI:
    put the ComfyUI tree on ``sys.path`` first."""
    import importlib

    holder = tmp_path_factory.mktemp("pack")
    (holder / PACK_PACKAGE).symlink_to(ROOT, target_is_directory=True)
    sys.path.append(str(holder))

    def _import(module: str):
        return importlib.import_module(f"{PACK_PACKAGE}.{module}")
    yield _import
    sys.path.remove(str(holder))


@pytest.fixture(scope="session")
def tiny_wide_dir(tmp_path_factory) -> Path:
    """A models folder with ``tiny-wide``: a tiny Qwen3-VL whose linear widths are multiples of 64, which
    bitsandbytes' CPU kernels need for int8 / 4-bit tests."""
    from tests.fixtures.tiny_critic import build_tiny_critic

    root = tmp_path_factory.mktemp("wide_models")
    build_tiny_critic(root / "tiny-wide", wide=True)
    return root
