"""Find a critic checkpoint on disk, or download it when (and only when) asked.

Offline first: a folder that exists is used without any network call. A missing
folder with downloads off is an error that names the folder to fill and the id
to fetch.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Callable, Sequence

KNOWN_CRITICS = (
    "TIGER-Lab/RationalRewards-8B-T2I",
    "TIGER-Lab/RationalRewards-8B-Edit",
    "Qwen/Qwen3-VL-8B-Instruct",
    "Qwen/Qwen3-VL-32B-Instruct",
    "Qwen/Qwen2.5-VL-7B-Instruct",
)
# Only what loading needs: weights as safetensors, configs, tokenizer and templates. No code, no pickles.
DOWNLOAD_PATTERNS = ("*.safetensors", "*.safetensors.index.json", "*.json", "*.jinja", "*.txt",
                     "tokenizer.model", "*.tiktoken", "merges.txt", "vocab.json")
_HF_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")

DownloadProgress = Callable[[int, int], None]   # (bytes done, bytes total)


class CheckpointNotFound(FileNotFoundError):
    pass


def is_hf_id(name: str) -> bool:
    return bool(_HF_ID.match(name)) and not Path(name).exists()


def local_folder_name(name: str) -> str:
    """``TIGER-Lab/RationalRewards-8B-T2I`` lives in ``<models>/RationalRewards-8B-T2I``."""
    return name.rstrip("/").split("/")[-1]


def is_checkpoint_dir(path: Path) -> bool:
    """A folder with a config.json and safetensors weights (the only weights the pack loads)."""
    return path.is_dir() and (path / "config.json").is_file() and any(path.glob("*.safetensors"))


def list_local(search_dirs: Sequence[str | Path]) -> list[str]:
    """Names of checkpoint folders found directly under the search folders."""
    names: set[str] = set()
    for root in search_dirs:
        root = Path(root)
        if root.is_dir():
            names.update(p.name for p in root.iterdir() if is_checkpoint_dir(p))
    return sorted(names)


def resolve_checkpoint(name: str, search_dirs: Sequence[str | Path], allow_download: bool = False,
                       progress: DownloadProgress | None = None) -> Path:
    """Return a local folder for ``name`` (a folder name, a path, or a Hugging Face id)."""
    name = name.strip()
    if not name:
        raise CheckpointNotFound("no critic checkpoint given: pick a folder or type a Hugging Face id")
    direct = Path(name).expanduser()
    if direct.is_absolute() and is_checkpoint_dir(direct):
        return direct
    folder = local_folder_name(name)
    for root in search_dirs:
        candidate = Path(root) / folder
        if is_checkpoint_dir(candidate):
            return candidate
    if not search_dirs:
        raise CheckpointNotFound(f"{name!r} is not a checkpoint folder and no model folder is configured")
    target = Path(search_dirs[0]) / folder
    if not is_hf_id(name):
        raise CheckpointNotFound(f"no checkpoint folder {folder!r} (config.json + .safetensors weights) under "
                                 f"{', '.join(str(s) for s in search_dirs)}")
    if not allow_download:
        raise CheckpointNotFound(
            f"critic {name!r} is not on disk: expected it in {target}. Either turn on 'allow download', or "
            f"fetch it yourself: huggingface-cli download {name} --local-dir \"{target}\"")
    return download(name, target, progress)


def download(repo_id: str, target: Path, progress: DownloadProgress | None = None) -> Path:
    """Fetch safetensors weights and configs of ``repo_id`` into ``target``, with progress."""
    from huggingface_hub import snapshot_download
    from tqdm.auto import tqdm

    class _Progress(tqdm):   # forwards byte counts to the caller (ComfyUI's progress bar)
        def update(self, n=1):
            out = super().update(n)
            if progress is not None and self.total and getattr(self, "unit", "") == "B":
                progress(int(self.n), int(self.total))
            return out

    target.mkdir(parents=True, exist_ok=True)
    snapshot_download(repo_id=repo_id, local_dir=str(target), allow_patterns=list(DOWNLOAD_PATTERNS),
                      tqdm_class=_Progress)
    if not is_checkpoint_dir(target) or not any(target.glob("*.safetensors")):
        raise CheckpointNotFound(f"downloaded {repo_id} into {target} but found no config.json + safetensors "
                                 "weights there; the repository may not be a transformers checkpoint")
    return target


def plan_critic(path: str | Path, *, quantization: str = "none", dtype: str = "bf16", batch_size: int = 1,
                max_pixels: int | None = None, new_tokens: int = 2048, attention: str = "sdpa"):
    """(shape, plan) of one critique with the checkpoint in ``path``, from its config and weight headers."""
    from . import memory_plan

    shape = memory_plan.shape_from_folder(path)
    return shape, memory_plan.plan(shape, quantization=quantization, dtype=dtype, batch=batch_size,
                                   image_pixels=max_pixels or memory_plan.DEFAULT_IMAGE_PIXELS,
                                   new_tokens=new_tokens, attention=attention)


def load_critic(name: str, search_dirs: Sequence[str | Path], *, allow_download: bool = False,
                dtype: str = "auto", device: str = "auto", attention: str = "sdpa",
                max_pixels: int | None = None, batch_size: int = 4, decoding: str = "auto",
                progress: DownloadProgress | None = None, path: str | Path | None = None,
                quantization: str = "none"):
    """Resolve ``name`` to a folder (downloading only if allowed) and load an in-process critic.
    ``path``: the folder, when the caller already resolved it (e.g. to plan memory first)."""
    from .backends.transformers_backend import TransformersBackend
    from .critic import Critic

    if path is None:
        path = resolve_checkpoint(name, search_dirs, allow_download=allow_download, progress=progress)
    backend = TransformersBackend.load(path, dtype=dtype, device=device, attention=attention,
                                       batch_size=batch_size, decoding=decoding, quantization=quantization)
    return Critic(backend=backend, max_pixels=max_pixels, name=name)
