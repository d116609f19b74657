"""Dimensions the RationalRewards checkpoints were trained to judge, per task.

The order matters: the checkpoints write the dimensions in this order, and the
parser falls back to position when a header is garbled.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Task(str, Enum):
    T2I = "t2i"
    EDIT = "edit"


@dataclass(frozen=True)
class Dimension:
    key: str            # stable identifier used in outputs, JSON and node ids
    title: str          # the header text the model writes
    aliases: tuple[str, ...]   # other spellings the parser accepts (lower case)
    allows_na: bool


TEXT_FAITHFULNESS = Dimension(
    "text_faithfulness", "Text Faithfulness",
    ("text faithfulness", "instruction faithfulness", "prompt faithfulness", "text alignment"), False)
IMAGE_FAITHFULNESS = Dimension(
    "image_faithfulness", "Image Faithfulness",
    ("image faithfulness", "source faithfulness", "consistency"), False)
PHYSICAL_QUALITY = Dimension(
    "physical_quality", "Physical and Visual Quality",
    ("physical and visual quality", "physical & visual quality", "physical quality",
     "visual quality", "physical/visual quality"), False)
TEXT_RENDERING = Dimension(
    "text_rendering", "Text Rendering",
    ("text rendering", "text-rendering", "typography"), True)

DIMENSIONS: dict[Task, tuple[Dimension, ...]] = {
    Task.T2I: (TEXT_FAITHFULNESS, PHYSICAL_QUALITY, TEXT_RENDERING),
    Task.EDIT: (TEXT_FAITHFULNESS, IMAGE_FAITHFULNESS, PHYSICAL_QUALITY, TEXT_RENDERING),
}

ALL_DIMENSIONS: tuple[Dimension, ...] = (TEXT_FAITHFULNESS, IMAGE_FAITHFULNESS, PHYSICAL_QUALITY, TEXT_RENDERING)
BY_KEY: dict[str, Dimension] = {d.key: d for d in ALL_DIMENSIONS}

SCORE_MIN, SCORE_MAX = 1.0, 4.0
# The authors' pairwise rule counts an N/A dimension as 2.5 for both candidates.
PAIRWISE_NA_VALUE = 2.5

# Weights for the overall score. "equal" is the published pointwise reward (mean of
# every non-N/A dimension). "rl_edit" is what the authors' editing RL trainers used:
# Image Faithfulness is parsed and shown but left out of the mean.
WEIGHT_PRESETS: dict[str, dict[str, float]] = {
    "equal": {d.key: 1.0 for d in ALL_DIMENSIONS},
    "rl_edit": {"text_faithfulness": 1.0, "image_faithfulness": 0.0,
                "physical_quality": 1.0, "text_rendering": 1.0},
}


def dimensions_for(task: Task | str) -> tuple[Dimension, ...]:
    return DIMENSIONS[Task(task)]


def resolve_weights(weights: str | dict[str, float] | None) -> dict[str, float]:
    """Turn a preset name or a partial mapping into a full key→weight mapping."""
    if weights is None:
        weights = "equal"
    if isinstance(weights, str):
        if weights not in WEIGHT_PRESETS:
            raise ValueError(f"unknown weight preset {weights!r}; choose one of {sorted(WEIGHT_PRESETS)}")
        return dict(WEIGHT_PRESETS[weights])
    unknown = set(weights) - set(BY_KEY)
    if unknown:
        raise ValueError(f"unknown dimension keys in weights: {sorted(unknown)}; known: {sorted(BY_KEY)}")
    if any(w < 0 for w in weights.values()):
        raise ValueError("weights must be non-negative")
    full = {d.key: 1.0 for d in ALL_DIMENSIONS}
    full.update({k: float(v) for k, v in weights.items()})
    return full


def dimension_named(name: str) -> Dimension | None:
    """The dimension a user means by ``name``: its on-screen title ("Physical and Visual Quality"),
    its key ("physical_quality", as saved by earlier workflows) or a known alias; case-insensitive."""
    wanted = " ".join(name.replace("_", " ").split()).lower()
    for d in ALL_DIMENSIONS:
        if wanted in (d.title.lower(), d.key.replace("_", " ")) or wanted in d.aliases:
            return d
    return None
