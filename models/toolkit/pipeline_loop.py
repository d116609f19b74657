"""Generate-Critique-Refine around a diffusers pipeline, outside ComfyUI.

The loop logic is the core's (``loop.py``: stop rule, best-of-rounds, seed policy, history;
``refine.py``: the next prompt with protected parts kept), the same the ComfyUI loop nodes use;
this module only supplies a generator (any ``DiffusionPipeline``: text-to-image, or an
image-to-image/editing pipeline given a source image) and writes each round's image, the best
image and a history JSON. Offline first, like the critic loader: a pipeline that is not on disk
is an error unless downloads are allowed.
"""
from __future__ import annotations

import inspect
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from PIL import Image

from ..backends.base import GenerationOptions
from ..critic.critic import Critic
from ..judging.critique import Critique
from ..runtime.checkpoints import is_hf_id
from ..judging.loop import SEED_POLICIES, History, LoopState, Round, StopRule
from ..judging.refine import MODES
from ..errors import RationalRewardsError
from .outputs import RERUN, output_error, write_atomic

Generate = Callable[[str, int], Image.Image]     # (prompt, seed) -> image


class PipelineNotFound(RationalRewardsError, FileNotFoundError):
    pass


# -- the diffusers side -----------------------------------------------------------------------------------

def is_pipeline_dir(path: Path) -> bool:
    return path.is_dir() and (path / "model_index.json").is_file()


def load_pipeline(name: str, search_dirs: Sequence[str | Path] = (), *, allow_download: bool = False,
                  dtype: str = "auto", device: str = "auto", edit: bool = False):
    """A ``DiffusionPipeline`` from a folder (``model_index.json``), a folder name under ``search_dirs``,
    or a Hugging Face id already in the local cache; downloads only with ``allow_download``.

    Safetensors weights only, no remote code. ``edit``: a text-to-image pipeline is turned into its
    image-to-image sibling (same weights) when it takes no ``image`` input.
    """
    from diffusers import AutoPipelineForImage2Image, DiffusionPipeline

    from ..backends.options import pick_device, pick_dtype

    dev = pick_device(device)
    kwargs: dict[str, Any] = {"dtype": pick_dtype(dtype, dev), "use_safetensors": True,
                              "trust_remote_code": False}
    path = Path(name).expanduser()
    candidates = [path] + [Path(d) / name.rstrip("/").split("/")[-1] for d in search_dirs]
    folder = next((c for c in candidates if is_pipeline_dir(c)), None)
    if folder is not None:
        pipe = DiffusionPipeline.from_pretrained(str(folder), local_files_only=True, **kwargs)
    elif is_hf_id(name):
        try:
            pipe = DiffusionPipeline.from_pretrained(name, local_files_only=True, **kwargs)
        except (OSError, ValueError) as e:
            if not allow_download:
                where = Path(search_dirs[0]) / name.split("/")[-1] if search_dirs else Path(name.split("/")[-1])
                raise PipelineNotFound(
                    f"diffusers pipeline {name!r} is not on disk. Fetch it (hf download {name} --local-dir "
                    f"\"{where}\") or pass --allow-download") from e
            pipe = DiffusionPipeline.from_pretrained(name, **kwargs)
    else:
        raise PipelineNotFound(f"no diffusers pipeline folder (with model_index.json) at {name!r}"
                               + (f" or under {', '.join(map(str, search_dirs))}" if search_dirs else ""))
    if edit and "image" not in inspect.signature(pipe.__call__).parameters:
        pipe = AutoPipelineForImage2Image.from_pipe(pipe)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(dev)


def pipeline_generator(pipe, source: Image.Image | None = None, **call_kwargs: Any) -> Generate:
    """``(prompt, seed) -> image`` for one pipeline: a local ``torch.Generator`` per call (the global RNG
    is never touched), the source image as ``image=`` for editing, ``None`` options left to the pipeline."""
    import torch

    accepted = inspect.signature(pipe.__call__).parameters
    extra = {k: v for k, v in call_kwargs.items() if v is not None}
    unknown = sorted(k for k in extra if k not in accepted)
    if unknown:
        raise ValueError(f"{type(pipe).__name__} takes no {', '.join(unknown)}; leave "
                         f"{'it' if len(unknown) == 1 else 'them'} out for this pipeline")
    if source is not None and "image" not in accepted:
        raise ValueError(f"{type(pipe).__name__} takes no input image, so it cannot edit a source image; "
                         "use an image-to-image or editing pipeline")

    def generate(prompt: str, seed: int) -> Image.Image:
        args = dict(extra, prompt=prompt, generator=torch.Generator("cpu").manual_seed(int(seed) % 2 ** 63))
        if source is not None:
            args["image"] = source
        return pipe(**args).images[0]
    return generate


# -- the loop ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LoopSettings:
    rule: StopRule = field(default_factory=StopRule)
    seed: int = 0
    seed_policy: str = "same"
    mode: str = "merge"
    keep: str = ""
    weights: str = "equal"

    def __post_init__(self) -> None:
        if self.seed_policy not in SEED_POLICIES:
            raise ValueError(f"seed policy must be one of {SEED_POLICIES}; got {self.seed_policy!r}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}; got {self.mode!r}")
        if self.rule.max_rounds < 1:
            raise ValueError("max_rounds must be at least 1")


@dataclass
class LoopResult:
    history: History
    images: list[Image.Image]
    critiques: list[Critique]

    @classmethod
    def of(cls, state: LoopState) -> "LoopResult":
        """A finished :class:`LoopState` (one image per round) as images and critiques per round."""
        return cls(state.history, [batch[0] for batch in state.kept], list(state.critiques))

    @property
    def best_index(self) -> int:
        """The best round, or round 0 when no round could be scored (as the ComfyUI loop returns)."""
        return self.history.best if self.history.best is not None else 0

    @property
    def best_image(self) -> Image.Image:
        return self.images[self.best_index]

    @property
    def best_prompt(self) -> str:
        return self.history.rounds[self.best_index].prompt


def run_loop(generate: Generate, critic: Critic, prompt: str, settings: LoopSettings | None = None, *,
             source: Image.Image | None = None, options: GenerationOptions | None = None,
             on_round: Callable[[Round, Image.Image], None] | None = None) -> LoopResult:
    """Generate, critique (Edit when ``source`` is given), refine, until the core's stop rule says stop.

    Each round is recorded by :meth:`LoopState.record`, the step the ComfyUI Loop End node takes."""
    settings = settings or LoopSettings()
    if not prompt or not prompt.strip():
        raise ValueError("the prompt is empty: give the prompt (or editing instruction) to refine")
    state = LoopState.start(prompt, settings.seed)
    while True:
        image = generate(state.prompt, state.seed)
        critique = critic.critique([image], state.prompt, options,
                                   sources=[source] if source is not None else None)[0]
        state = state.record([critique], [image], settings.rule, weights=settings.weights,
                             mode=settings.mode, keep=settings.keep, seed_policy=settings.seed_policy)
        if on_round is not None:
            on_round(state.history.rounds[-1], image)
        if state.done:
            return LoopResult.of(state)


# -- files ------------------------------------------------------------------------------------------------

def write_result(result: LoopResult, folder: str | Path, meta: dict | None = None) -> Path:
    """``round_NN.png`` per round, ``best.png``, and ``history.json`` (rounds, best, stop reason, meta)."""
    folder = Path(folder)
    kept, rerun = "the prompts finished before are kept; this one is not marked done", f"{RERUN} (it redoes it)"
    images = [(folder / f"round_{i:02d}.png", img) for i, img in enumerate(result.images)]
    for path, img in images + [(folder / "best.png", result.best_image)]:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            img.save(path)
        except OSError as e:
            raise output_error(path, e, kept, rerun) from None
    data = json.loads(result.history.to_json()) | {
        "best_prompt": result.best_prompt, "best_image": "best.png",
        "images": [path.name for path, _ in images], "done": True} | (meta or {})
    write_atomic(folder / "history.json", json.dumps(data, indent=2, ensure_ascii=False), kept, rerun)   # last: done
    return folder / "history.json"


@dataclass(frozen=True)
class Job:
    prompt: str
    source: Path | None = None
    seed: int | None = None
    id: str = ""


def read_prompts(path: str | Path) -> list[Job]:
    """A prompt list: ``.txt`` (one prompt per line, ``#`` comments) or ``.jsonl`` (``prompt``, optional
    ``source``, ``seed``, ``id``; relative sources are read from the file's folder)."""
    path = Path(path)
    jobs = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or (path.suffix.lower() != ".jsonl" and line.lstrip().startswith("#")):
            continue
        if path.suffix.lower() == ".jsonl":
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{n}: not a JSON object ({e.msg})") from None
            if not isinstance(row, dict) or not str(row.get("prompt", "")).strip():
                raise ValueError(f"{path}:{n}: each line needs a \"prompt\"")
            src = row.get("source")
            src = (Path(src) if Path(src).is_absolute() else path.parent / src) if src else None
            if src is not None and not src.is_file():
                raise ValueError(f"{path}:{n}: source image {src} does not exist")
            jobs.append(Job(str(row["prompt"]).strip(), src, row.get("seed"), str(row.get("id", ""))))
        else:
            jobs.append(Job(line.strip()))
    if not jobs:
        raise ValueError(f"{path} holds no prompts")
    return jobs


def job_folder(index: int, job: Job) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", (job.id or job.prompt).lower()).strip("-")[:40] or "prompt"
    return f"{index:04d}-{slug}"


def is_done(folder: Path) -> bool:
    try:
        return bool(json.loads((folder / "history.json").read_text(encoding="utf-8")).get("done"))
    except (OSError, ValueError):
        return False
