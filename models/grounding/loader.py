"""Find and load grounding models: offline first, downloads only when allowed, no code from model folders.

Detectors (``models/grounding-dino``): transformers GroundingDINO folders, Hub ids fetched into such a
folder, or the original ``groundingdino_swin*.pth`` files (converted in memory; their BERT tokenizer comes
from a local ``bert-base-uncased`` folder or the Hugging Face cache, never from the network unless allowed).
Segmenters (``models/sams``): transformers SAM / SAM 2 folders or Hub ids, Meta's ``sam_vit_*.pth`` (through
the optional segment-anything package), or no model at all (box masks). ``.pth`` pickles are read with
``torch.load(weights_only=True)``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence


from ..runtime.compat import require_transformers
from ..runtime.checkpoints import list_local as _list_models
from ..runtime.checkpoints import resolve_model
from .detect import GroundingDetector
from .files import GroundingLoadError, GroundingModelNotFound, read_tensors  # noqa: F401 (public here too)
from .localise import GroundingModels
from .segment import BoxSegmenter, HFSegmenter, MetaSegmenter, Segmenter

KNOWN_DETECTORS = ("IDEA-Research/grounding-dino-tiny", "IDEA-Research/grounding-dino-base")
KNOWN_SEGMENTERS = ("facebook/sam-vit-base", "facebook/sam-vit-large", "facebook/sam-vit-huge",
                    "facebook/sam2.1-hiera-tiny", "facebook/sam2.1-hiera-small", "facebook/sam2.1-hiera-base-plus",
                    "facebook/sam2.1-hiera-large")
NO_SEGMENTER = "none (box masks)"
CHECKPOINT_FILES = (".pth", ".pt")
BERT_FOLDER = "bert-base-uncased"
BERT_HUB_IDS = ("google-bert/bert-base-uncased", "bert-base-uncased")
BERT_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json")

DownloadProgress = Callable[[int, int], None]


def list_local(search_dirs: Sequence[str | Path], kind: str) -> list[str]:
    """Model folders (with config.json) and checkpoint files directly under the search folders.

    ``kind`` is ``detector`` or ``segmenter``; a ``bert-base-uncased`` tokenizer folder is not a model."""
    return _list_models(search_dirs, files=CHECKPOINT_FILES, exclude=(BERT_FOLDER,) if kind == "detector" else ())


def resolve(name: str, search_dirs: Sequence[str | Path], what: str, allow_download: bool = False,
            progress: DownloadProgress | None = None) -> Path:
    """A local folder or file for ``name`` (see :func:`rationalrewards.runtime.checkpoints.resolve_model`)."""
    return resolve_model(name, search_dirs, what=what, files=CHECKPOINT_FILES, allow_download=allow_download,
                         progress=progress, error=GroundingModelNotFound)


# --- BERT tokenizer for original GroundingDINO checkpoints ---------------------------------------------

def load_bert_tokenizer(folder: str | Path):
    """A fast BERT tokenizer from a local folder: tokenizer.json if present, else vocab.txt."""
    import transformers
    from transformers import AutoTokenizer, BertTokenizerFast

    folder = Path(folder)
    if (folder / "tokenizer.json").is_file():
        return AutoTokenizer.from_pretrained(folder, local_files_only=True, trust_remote_code=False)
    vocab_file = folder / "vocab.txt"
    if not vocab_file.is_file():
        raise GroundingModelNotFound(f"{folder} has neither tokenizer.json nor vocab.txt")
    words = vocab_file.read_text(encoding="utf-8").splitlines()
    # vocab={...}: BertTokenizerFast(vocab_file=...) silently builds a 5-token vocabulary in transformers 5.x,
    # while 4.x knows only vocab_file (it builds the slow tokenizer from the file first)
    if int(transformers.__version__.split(".")[0]) < 5:
        return BertTokenizerFast(vocab_file=str(vocab_file), do_lower_case=True)
    return BertTokenizerFast(vocab={w: i for i, w in enumerate(words)}, do_lower_case=True)


def find_bert_tokenizer(search_dirs: Sequence[str | Path], allow_download: bool = False):
    """bert-base-uncased's tokenizer from ``<dir>/bert-base-uncased/``, the Hugging Face cache, or (only when
    allowed) the Hub, saved into the first search folder."""
    for root in search_dirs:
        folder = Path(root) / BERT_FOLDER
        if (folder / "vocab.txt").is_file() or (folder / "tokenizer.json").is_file():
            return load_bert_tokenizer(folder)
    try:
        from huggingface_hub import snapshot_download
        for repo in BERT_HUB_IDS:
            try:
                cached = snapshot_download(repo, allow_patterns=list(BERT_FILES), local_files_only=True)
            except Exception:   # not in the cache (LocalEntryNotFoundError & co.)
                continue
            if (Path(cached) / "vocab.txt").is_file() or (Path(cached) / "tokenizer.json").is_file():
                return load_bert_tokenizer(cached)
    except ImportError:
        pass
    target = Path(search_dirs[0]) / BERT_FOLDER if search_dirs else None
    if not allow_download or target is None:
        raise GroundingModelNotFound(
            "original GroundingDINO checkpoints need the bert-base-uncased tokenizer, and none is on disk. Put "
            f"vocab.txt (or tokenizer.json) into {target or '<models>/grounding-dino/' + BERT_FOLDER}, e.g. "
            f"hf download {BERT_HUB_IDS[0]} vocab.txt tokenizer.json tokenizer_config.json "
            f"--local-dir \"{target}\", or turn on 'download if missing'")
    from huggingface_hub import snapshot_download
    snapshot_download(BERT_HUB_IDS[0], allow_patterns=list(BERT_FILES), local_dir=str(target))
    return load_bert_tokenizer(target)


# --- loaders --------------------------------------------------------------------------------------------

def load_detector(name: str, search_dirs: Sequence[str | Path], *, tokenizer_dirs: Sequence[str | Path] = (),
                  allow_download: bool = False, progress: DownloadProgress | None = None) -> GroundingDetector:
    require_transformers()
    path = resolve(name, search_dirs, "GroundingDINO model", allow_download, progress)
    if path.is_dir():
        from transformers import AutoConfig
        model_type = AutoConfig.from_pretrained(path, local_files_only=True, trust_remote_code=False).model_type
        if model_type != "grounding-dino":
            raise GroundingLoadError(f"{path.name} is a {model_type!r} model, not GroundingDINO")
        return GroundingDetector.from_folder(path)
    try:   # transformers >= 5.4 names the PIL processor apart; before that it is the plain class
        from transformers.models.grounding_dino.image_processing_pil_grounding_dino import (
            GroundingDinoImageProcessorPil)
    except ImportError:
        from transformers import GroundingDinoImageProcessor as GroundingDinoImageProcessorPil

    from .convert_groundingdino import ConversionError, load_original
    try:
        model = load_original(read_tensors(path))
    except ConversionError as e:
        raise GroundingLoadError(f"{path.name}: {e}") from None
    tokenizer = find_bert_tokenizer(list(tokenizer_dirs) or list(search_dirs), allow_download)
    vocab = model.config.text_config.vocab_size
    if len(tokenizer) != vocab:
        raise GroundingLoadError(f"the BERT tokenizer has {len(tokenizer)} tokens but {path.name} was trained with "
                                 f"{vocab}; use bert-base-uncased's vocab.txt")
    # the original preprocessing: shortest edge 800, longest 1333, ImageNet mean/std
    processor = GroundingDinoImageProcessorPil(size={"shortest_edge": 800, "longest_edge": 1333})
    return GroundingDetector(model, tokenizer, processor, name=path.name)


def load_segmenter(name: str, search_dirs: Sequence[str | Path], *, allow_download: bool = False,
                   progress: DownloadProgress | None = None) -> Segmenter:
    if not name or name == NO_SEGMENTER:
        return BoxSegmenter()
    path = resolve(name, search_dirs, "SAM model", allow_download, progress)
    if path.is_dir():
        require_transformers()
        try:
            return HFSegmenter.from_folder(path)
        except ValueError as e:
            raise GroundingLoadError(str(e)) from None
    try:
        return MetaSegmenter.from_file(path)
    except GroundingLoadError:      # a pickle that is not tensors (read_tensors says so)
        raise
    except ValueError as e:         # MetaSamError
        raise GroundingLoadError(f"{path.name}: {e}") from None


def load_grounding(detector: str, segmenter: str, detector_dirs: Sequence[str | Path],
                   segmenter_dirs: Sequence[str | Path], *, tokenizer_dirs: Sequence[str | Path] = (),
                   allow_download: bool = False, progress: DownloadProgress | None = None) -> GroundingModels:
    """Both models, on the CPU (``GroundingModels.placed`` moves them for each call)."""
    det = load_detector(detector, detector_dirs, tokenizer_dirs=tokenizer_dirs, allow_download=allow_download,
                        progress=progress)
    seg = load_segmenter(segmenter, segmenter_dirs, allow_download=allow_download, progress=progress)
    return GroundingModels(det, seg)
