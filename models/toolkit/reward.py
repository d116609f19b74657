"""A RationalRewards reward for diffusion RL trainers (flow_grpo, DiffusionNFT, Flow-Factory).

    reward = RationalReward(servers=["http://gpu1:8000/v1", "http://gpu2:8000/v1"], model="rationalrewards-t2i")
    result = reward(images, prompts)          # images: NCHW float tensor in [0, 1] or a list of PIL images
    result.overall                            # per-image reward in [0, 1]
    result.unreadable                         # True where the critic's answer gave no reward

The reward is the published pointwise one, (weighted mean of the non-N/A dimension scores - 1) / 3.
What an unreadable answer (or a failed request) is worth is the ``on_unreadable`` rule of
:mod:`.rules`: ``zero`` (default here: the authors' RL convention) or ``nan``. Either way the
``unreadable`` mask says which images got no real score -- a 0.0 is never silent.

One object serves every trainer thread: requests of concurrent calls share ``max_concurrency`` slots,
spread over the given servers (or run in batches on an in-process critic).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image

from ..backends.base import GenerationOptions
from ..critic.critic import Critic, CritiqueInputError, Item
from ..judging.critique import Critique, ScoreStatus
from ..runtime.factory import server_critics
from .dispatch import Dispatcher
from ..critic.images import ImageError, flatten_rgb, from_unit_floats
from ..judging.parser import parse_critique
from ..judging.rubric import SCORE_MAX, SCORE_MIN, Task, dimensions_for
from ..judging.rules import pointwise_reward, unreadable, unreadable_rule

# The authors' RL trainers: every dimension for T2I; editing leaves Image Faithfulness out.
DEFAULT_WEIGHTS = {Task.T2I: "equal", Task.EDIT: "rl_edit"}


def to_pil_images(images: Any, what: str = "images") -> list[Image.Image]:
    """A list of RGB PIL images from what trainers hold: PIL images, an NCHW/NHWC tensor or array
    (float in [0, 1] or uint8), or a list of CHW/HWC tensors/arrays."""
    if isinstance(images, Image.Image):
        return [images]
    if hasattr(images, "detach") or isinstance(images, np.ndarray):
        arr = _as_numpy(images)
        if arr.ndim == 3:
            arr = arr[None]
        if arr.ndim != 4:
            raise ValueError(f"{what}: expected a batch (N, C, H, W) or (N, H, W, C), got shape {tuple(arr.shape)}")
        return [_array_to_pil(a, what) for a in arr]
    if isinstance(images, (list, tuple)):
        return [img if isinstance(img, Image.Image) else _array_to_pil(_as_numpy(img), what) for img in images]
    raise TypeError(f"{what}: expected PIL images, a tensor or an array, not {type(images).__name__}")


def _as_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):   # torch, without importing it
        x = x.detach()
        if str(getattr(x, "dtype", "")) in ("torch.bfloat16", "torch.float16"):
            x = x.float()
        x = x.cpu().numpy()
    return np.asarray(x)


def _array_to_pil(a: np.ndarray, what: str) -> Image.Image:
    """One image (CHW or HWC; uint8, or floats in [0, 1] through the pack's one conversion) as RGB, with
    transparency flattened onto white like every image the critic reads."""
    if a.ndim != 3:
        raise ValueError(f"{what}: expected one image as (C, H, W) or (H, W, C), got shape {a.shape}")
    if a.shape[0] in (1, 3, 4) and a.shape[-1] not in (1, 3, 4):
        a = np.transpose(a, (1, 2, 0))          # CHW -> HWC
    if a.shape[-1] not in (1, 3, 4):
        raise ValueError(f"{what}: expected 1, 3 or 4 channels, got shape {a.shape}")
    if a.dtype == np.uint8:
        img = Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a)
    else:
        [img] = from_unit_floats(a[None])
    return flatten_rgb(img)


@dataclass
class RewardResult:
    """Rewards for one batch, in input order."""
    overall: list[float]                  # in [0, 1]; unreadable -> 0.0 or NaN (the rule)
    scores: dict[str, list[float]]        # per dimension, 1-4 scale; NaN = N/A or unreadable (see states)
    states: dict[str, list[str]]          # per dimension: "ok" / "n/a" / "missing"
    unreadable: list[bool]                # True: no real score (unparseable answer or failed request)
    critiques: list[Critique | None]      # None where the request failed
    errors: list[str | None]              # the failed request's error, else None
    rule: str = "zero"
    info: dict[str, Any] = field(default_factory=dict)

    def normalized(self, key: str) -> np.ndarray:
        """One dimension's scores mapped to [0, 1] like the overall reward (NaN where not read)."""
        return (np.asarray(self.scores[key], dtype=np.float64) - SCORE_MIN) / (SCORE_MAX - SCORE_MIN)

    def as_flow_grpo(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """``({"avg": ..., "<dimension>": ...}, info)``: what flow_grpo's ``multi_score`` returns. Every
        value is in [0, 1]; a dimension is NaN where it is N/A or unreadable; train on ``avg``."""
        scores = {"avg": np.asarray(self.overall, dtype=np.float32)}
        scores.update({k: self.normalized(k).astype(np.float32) for k in self.scores})
        info = {"unreadable": np.asarray(self.unreadable, dtype=bool), "errors": list(self.errors),
                "rule": self.rule,
                "refined_prompts": [c.refined_request if c is not None else None for c in self.critiques]}
        return scores, info


class RationalReward:
    """Score images with a RationalRewards critic; thread-safe, batched, several servers at once."""

    def __init__(self, critic: Critic | Sequence[Critic] | None = None, *,
                 servers: str | Sequence[str] | None = None, model: str = "", task: Task | str = Task.T2I,
                 weights: str | dict[str, float] | None = None, on_unreadable: str = "zero",
                 max_concurrency: int | None = 8, options: GenerationOptions | None = None,
                 api_key_env: str = "", timeout_s: float = 300.0, retries: int = 3,
                 max_pixels: int | None = None, check: bool = True):
        if (critic is None) == (not servers):
            raise ValueError("give either a critic (or critics) or server URLs, not both and not neither")
        self.task = Task(task)
        self.weights = DEFAULT_WEIGHTS[self.task] if weights is None else weights
        self.rule = unreadable_rule(on_unreadable)
        critics = critic if critic is not None else server_critics(
            servers, model=model, api_key_env=api_key_env, timeout_s=timeout_s, retries=retries,
            max_pixels=max_pixels, check=check)
        self.dispatcher = Dispatcher(critics, max_concurrency)
        # the authors' scoring setting: temperature 0.1, 2048 new tokens
        self.options = options or GenerationOptions(max_new_tokens=2048, temperature=0.1)
        self.dimensions = [d.key for d in dimensions_for(self.task)]

    def close(self) -> None:
        self.dispatcher.close()

    def __call__(self, images: Any, prompts: str | Sequence[str], sources: Any = None, *,
                 seed: int | None = None) -> RewardResult:
        """One reward per image. ``sources`` (edits): one source per image, or one for all."""
        pils = to_pil_images(images)
        n = len(pils)
        prompts = [prompts] * n if isinstance(prompts, str) else list(prompts)
        if len(prompts) != n:
            raise ValueError(f"{len(prompts)} prompts for {n} images")
        if self.task is Task.EDIT:
            if sources is None:
                raise ValueError("an edit reward needs the source images (sources=... / ref_images)")
            srcs = to_pil_images(sources, "sources")
            srcs = srcs * n if len(srcs) == 1 else srcs
            if len(srcs) != n:
                raise ValueError(f"{len(srcs)} source images for {n} edited images")
            items = [Item(self.task, "pointwise", p, (s, img)) for p, s, img in zip(prompts, srcs, pils)]
        else:
            items = [Item(self.task, "pointwise", p, (img,)) for p, img in zip(prompts, pils)]
        options = self.options if seed is None else GenerationOptions(
            self.options.max_new_tokens, self.options.temperature, self.options.top_p, seed)
        outcomes = self.dispatcher.map(items, options)
        for o in outcomes:   # bad input is the caller's bug: say so instead of scoring it 0
            if isinstance(o.error, (CritiqueInputError, ImageError)):
                raise ValueError(f"image {o.index}: {o.error}") from o.error
        return self._result(outcomes)

    reward = __call__

    def _result(self, outcomes) -> RewardResult:
        overall, mask, crits, errors = [], [], [], []
        scores = {k: [] for k in self.dimensions}
        states = {k: [] for k in self.dimensions}
        no_answer = parse_critique("", self.task)   # a failed request is worth what the rule gives no score
        for o in outcomes:
            crit = o.parsed() if o.ok else None
            crits.append(crit)
            errors.append(None if o.ok else o.error_text)
            judged = crit if crit is not None else no_answer
            overall.append(pointwise_reward(judged, self.weights, self.rule))
            # masked: no real score, whatever the rule filled in (0.0 is never silent)
            mask.append(crit is None or unreadable(crit, self.weights)
                        or math.isnan(pointwise_reward(crit, self.weights, "nan")))
            for k in self.dimensions:
                dim = crit.dimensions.get(k) if crit is not None else None
                scores[k].append(dim.value if dim is not None else math.nan)
                states[k].append(dim.status.value if dim is not None else ScoreStatus.MISSING.value)
        return RewardResult(overall, scores, states, mask, crits, errors, self.rule.value)


def flow_grpo_reward(reward: RationalReward) -> Callable[..., tuple[dict[str, np.ndarray], dict[str, Any]]]:
    """flow_grpo / DiffusionNFT shape: ``fn(images, prompts, metadata, ref_images=None) -> (scores, info)``
    (safe to call from the trainer's ThreadPoolExecutor)."""
    def fn(images, prompts, metadata=None, ref_images=None):
        return reward(images, prompts, ref_images).as_flow_grpo()
    return fn


def flow_grpo_edit_reward(reward: RationalReward) -> Callable[..., tuple[dict[str, np.ndarray], dict[str, Any]]]:
    """The authors' editing fork of flow_grpo: ``fn(ref_images, images, prompts, metadata)``."""
    def fn(ref_images, images, prompts, metadata=None):
        return reward(images, prompts, ref_images).as_flow_grpo()
    return fn


__all__ = ["DEFAULT_WEIGHTS", "RationalReward", "RewardResult", "flow_grpo_edit_reward", "flow_grpo_reward",
           "to_pil_images"]
