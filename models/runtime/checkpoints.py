"""Find a critic checkpoint on disk, or download it when (and only when) asked; what image size it was trained on.

Offline first: a folder that exists is used without any network call. A missing
folder with downloads off is an error that names the folder to fill and the id
to fetch.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Callable, Sequence
from ..errors import RationalRewardsError
from .misplaced import misplaced

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
# The RationalRewards checkpoints were fine-tuned with LLaMA-Factory's ``image_max_pixels: 802816``
# (about 784 visual tokens at patch 16 x merge 2): larger images were never seen in training.
RR_TRAINED_MAX_PIXELS = 802_816
AUTO_MAX_PIXELS = -1   # max_pixels value meaning "what the checkpoint was trained on"
_HF_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")

DownloadProgress = Callable[[int, int], None]   # (bytes done, bytes total)


class CheckpointNotFound(RationalRewardsError, FileNotFoundError):
    pass


class CheckpointDamaged(RationalRewardsError, ValueError):
    """A checkpoint folder whose files cannot be what they claim (cut-off download, corrupt file)."""


def is_hf_id(name: str) -> bool:
    return bool(_HF_ID.match(name)) and not Path(name).exists()


def local_folder_name(name: str) -> str:
    """``TIGER-Lab/RationalRewards-8B-T2I`` lives in ``<models>/RationalRewards-8B-T2I``."""
    return name.rstrip("/").split("/")[-1]


def is_checkpoint_dir(path: Path) -> bool:
    """A folder with a config.json and safetensors weights (the only weights the pack loads)."""
    return path.is_dir() and (path / "config.json").is_file() and any(path.glob("*.safetensors"))


def is_model(path: Path, files: Sequence[str] = ()) -> bool:
    """A checkpoint folder, or (when ``files`` lists suffixes such as ``.pth``) a file with one of them."""
    return is_checkpoint_dir(path) or (bool(files) and path.is_file() and path.suffix.lower() in files)


def list_local(search_dirs: Sequence[str | Path], files: Sequence[str] = (), exclude: Sequence[str] = ()) -> list[str]:
    """Names of the models directly under the search folders: checkpoint folders, plus files ending in
    ``files``; hidden entries and the names in ``exclude`` are not models."""
    names: set[str] = set()
    for root in search_dirs:
        root = Path(root)
        if root.is_dir():
            names.update(p.name for p in root.iterdir()
                         if not p.name.startswith(".") and p.name not in exclude and is_model(p, files))
    return sorted(names)


def model_choices(local: Sequence[str], known: Sequence[str]) -> list[str]:
    """A loader's list: the folders on disk, then the known Hub ids whose folder is not among them."""
    return list(local) + [k for k in known if local_folder_name(k) not in local]


def resolve_model(name: str, search_dirs: Sequence[str | Path], *, what: str = "critic checkpoint",
                  files: Sequence[str] = (), allow_download: bool = False, progress: DownloadProgress | None = None,
                  error: type[FileNotFoundError] = CheckpointNotFound) -> Path:
    """A local folder (or, with ``files``, a file) for ``name``: a name in the search folders, an absolute
    path, or a Hugging Face id -- fetched into the first search folder only when ``allow_download``."""
    name = (name or "").strip()
    if not name:
        raise error(f"no {what} given: pick one from the list or type a Hugging Face id")
    direct = Path(name).expanduser()
    if direct.is_absolute() and is_model(direct, files):
        return direct
    for root in search_dirs:
        for candidate in dict.fromkeys((Path(root) / name, Path(root) / local_folder_name(name))):
            if is_model(candidate, files):
                return candidate
    folder = local_folder_name(name)
    fetch = (f"hf download {name} --local-dir \"{Path(search_dirs[0]) / folder}\"" if is_hf_id(name) and search_dirs
             else "put the model's whole folder there")
    downloading = allow_download and is_hf_id(name) and bool(search_dirs)   # resumes a half-done folder
    problem = None if downloading else misplaced(name, search_dirs, folder, fetch)
    if problem:
        raise error(f"{what} {name!r} could not be loaded: {problem}")
    where = ", ".join(str(s) for s in search_dirs) or "(no model folder configured)"
    if not is_hf_id(name) or not search_dirs:
        kinds = "a folder with config.json and .safetensors weights" + (
            f", or a {' / '.join(files)} file" if files else "")
        raise error(f"{what} {name!r} not found in {where} (a model is {kinds})")
    target = Path(search_dirs[0]) / local_folder_name(name)
    if not allow_download:
        raise error(f"{what} {name!r} is not on disk: expected it in {target}. Either turn on 'download if missing', or "
                    f"fetch it yourself: hf download {name} --local-dir \"{target}\"")
    return download(name, target, progress)


def resolve_checkpoint(name: str, search_dirs: Sequence[str | Path], allow_download: bool = False,
                       progress: DownloadProgress | None = None) -> Path:
    """Return a local folder for a critic ``name`` (a folder name, a path, or a Hugging Face id)."""
    return resolve_model(name, search_dirs, allow_download=allow_download, progress=progress)


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


def is_rationalrewards(name: str = "", path: str | Path | None = None) -> bool:
    """True for a RationalRewards checkpoint: by its id/folder name, or the name its config records."""
    names = [name, Path(path).name if path else ""]
    if path is not None and (Path(path) / "config.json").is_file():
        try:
            config = json.loads((Path(path) / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            config = {}
        if isinstance(config, dict):
            names += [str(config.get(k, "")) for k in ("_name_or_path", "name_or_path")]
    return any("rationalrewards" in n.lower().replace("-", "").replace("_", "") for n in names if n)


def resolve_max_pixels(requested: int | None, name: str = "", path: str | Path | None = None
                       ) -> tuple[int | None, str]:
    """(max_pixels, why) for a critic: ``AUTO_MAX_PIXELS`` (-1) follows the checkpoint's training
    (802,816 px for RationalRewards, the processor's own limit for other models); 0 or None lets the
    processor decide; a positive value is used as given."""
    if requested is not None and requested < 0:
        if is_rationalrewards(name, path):
            return RR_TRAINED_MAX_PIXELS, "the checkpoint's training size"
        return None, "the processor's own limit (not a RationalRewards checkpoint)"
    if not requested:
        return None, "the processor decides (max_pixels 0)"
    return int(requested), "set by the user"


def check_checkpoint(path: str | Path, name: str = "") -> None:
    """Read what loading will read -- config.json, every safetensors header, the shard index -- and say which
    file is broken and how to fix it, before transformers fails somewhere inside with a bare parser error."""
    from safetensors import safe_open

    path = Path(path)
    repo = next((k for k in (name, *KNOWN_CRITICS) if _HF_ID.match(k) and local_folder_name(k) == path.name), None)
    fetch = (f'download it again: hf download {repo} --local-dir "{path}"' if repo
             else "copy or download it again")
    config = path / "config.json"
    try:
        json.loads(config.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise CheckpointDamaged(f"{config} is not valid JSON ({e}); the download was probably cut off: {fetch}") from None
    index = path / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values())
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise CheckpointDamaged(f"{index} is not a safetensors index ({type(e).__name__}: {e}): {fetch}") from None
        missing = sorted(s for s in shards if not (path / s).is_file())
        if missing:
            raise CheckpointDamaged(f"{path.name} is incomplete: {len(missing)} of {len(shards)} weight files are "
                                    f"missing ({', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}): {fetch}")
    for f in sorted(path.glob("*.safetensors")):
        try:
            with safe_open(str(f), framework="numpy"):
                pass
        except Exception as e:   # noqa: BLE001 - safetensors' own error type moved between releases
            raise CheckpointDamaged(f"{f} is truncated or corrupt ({str(e).splitlines()[0]}); {fetch}") from None
