"""What is in the wrong place when a model is not found: the sentence that says what was found and
where to move it, instead of a bare "not found".

A checkpoint is a folder holding ``config.json`` and ``*.safetensors`` (plus tokenizer and processor
files). The common mistakes: the files saved loose in the models folder itself, a folder one level too
deep (or a Hugging Face cache layout), a folder with only a ``.ckpt`` / ``.bin`` / ``.gguf``, or only half
of a download.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

OTHER_WEIGHTS = (".ckpt", ".pth", ".pt", ".bin", ".gguf", ".onnx")


def _is_checkpoint(path: Path) -> bool:
    return path.is_dir() and (path / "config.json").is_file() and any(path.glob("*.safetensors"))


def _names(paths: Sequence[Path], limit: int = 3) -> str:
    shown = ", ".join(p.name for p in paths[:limit])
    return shown + (f" and {len(paths) - limit} more" if len(paths) > limit else "")


def _inner_checkpoint(folder: Path) -> Path | None:
    """A checkpoint one level down, or in a Hugging Face cache layout (``snapshots/<hash>/``)."""
    for candidate in [*sorted(folder.glob("*/")), *sorted(folder.glob("snapshots/*/")),
                      *sorted(folder.glob("*/snapshots/*/"))]:
        if _is_checkpoint(candidate):
            return candidate
    return None


def _folder_problem(folder: Path, fetch: str) -> str | None:
    """What is wrong with ``folder`` (which exists and is not a checkpoint)."""
    entries = [p for p in folder.iterdir() if not p.name.startswith(".")]
    if not entries:
        return f"{folder} is empty (an interrupted download?); {fetch}"
    inner = _inner_checkpoint(folder)
    if inner is not None:
        return (f"the checkpoint is one level too deep, in {inner}: move the files of that folder up into "
                f"{folder} (config.json and the .safetensors files must sit directly in it)")
    safetensors = sorted(folder.glob("*.safetensors"))
    other = sorted(p for p in entries if p.suffix.lower() in OTHER_WEIGHTS)
    has_config = (folder / "config.json").is_file()
    if safetensors and not has_config:
        return (f"{folder} holds {_names(safetensors)} but no config.json: copy the whole repository into it "
                f"(config.json, the tokenizer and processor files too); {fetch}")
    if has_config and other:
        return (f"{folder} holds {_names(other)} but no .safetensors weights: the pack loads safetensors only "
                f"(a pickled file can run code); {fetch}")
    if other:
        return (f"{folder} holds {_names(other)} but no config.json: a single {other[0].suffix} file is not a "
                f"critic checkpoint (a Hugging Face folder with config.json, .safetensors weights and the "
                f"tokenizer is); {fetch}")
    if has_config:
        return f"{folder} has config.json but no .safetensors weights (an interrupted download?); {fetch}"
    return f"{folder} holds {_names(entries)} but no config.json or .safetensors weights; {fetch}"


def misplaced(name: str, search_dirs: Sequence[str | Path], folder_name: str, fetch: str) -> str | None:
    """Why ``name`` was not found although something is there, or None when nothing is.

    ``folder_name`` is the folder the model belongs in (the part of a Hub id after the ``/``); ``fetch``
    ends each sentence: how to get the model properly (the ``hf download`` command, or what to copy)."""
    for root in (Path(r) for r in search_dirs):
        for folder in dict.fromkeys((root / name, root / folder_name)):
            if folder.is_dir() and not _is_checkpoint(folder):
                return _folder_problem(folder, fetch)
    for root in (Path(r) for r in search_dirs):
        loose = sorted(root.glob("*.safetensors")) + ([root / "config.json"] if (root / "config.json").is_file()
                                                      else [])
        if loose:
            return (f"{_names(loose)} lie loose in {root}: a checkpoint is a folder inside it; move them (with "
                    f"the tokenizer and processor files) into {root / folder_name}")
    return None
