"""The public entry point for an in-process critic: :func:`load_critic` (``rationalrewards.loader``).

Finding checkpoints lives in :mod:`.checkpoints` (its names are importable from here too, as they
were); building critics in :mod:`.factory`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from .checkpoints import (AUTO_MAX_PIXELS, DOWNLOAD_PATTERNS, KNOWN_CRITICS, RR_TRAINED_MAX_PIXELS,  # noqa: F401
                          CheckpointNotFound, DownloadProgress, download, is_checkpoint_dir, is_hf_id, is_model,
                          is_rationalrewards, list_local, local_folder_name, model_choices, resolve_checkpoint,
                          resolve_max_pixels, resolve_model)
from .factory import CheckpointSpec, build_critic


def load_critic(name: str, search_dirs: Sequence[str | Path], *, allow_download: bool = False,
                dtype: str = "auto", device: str = "auto", attention: str = "sdpa",
                max_pixels: int | None = AUTO_MAX_PIXELS, batch_size: int = 4, decoding: str = "auto",
                template_dirs: Sequence[str | Path] = (), progress: DownloadProgress | None = None,
                adapter: str | Path | None = None, path: str | Path | None = None, quantization: str = "none"):
    """An in-process critic for ``name`` (a folder in ``search_dirs``, a path, or a Hugging Face id fetched
    only when ``allow_download``): the public entry point, built by
    :func:`rationalrewards.runtime.factory.build_critic` from a
    :class:`~rationalrewards.runtime.factory.CheckpointSpec` of these arguments.

    Templates are read from the checkpoint's own ``templates/`` folder first, then from
    ``template_dirs``, then from the pack; a broken user template fails here, naming the file.
    ``adapter``: a local LoRA folder (PEFT) merged in at load time; ``quantization``: none / int8 / 4bit
    (bitsandbytes; a pre-quantised folder loads as it is); ``path``: the folder, when already resolved."""
    return build_critic(CheckpointSpec(
        name, tuple(str(d) for d in search_dirs), allow_download, None if path is None else str(path), dtype, device,
        attention, batch_size, decoding, quantization, None if adapter is None else str(adapter), max_pixels,
        tuple(str(d) for d in template_dirs)), progress=progress)
