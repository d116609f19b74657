"""Reading grounding checkpoint files, and the errors a file that is missing or unusable raises.

At the bottom of ``grounding/`` so the loader and the segmenters can both read weights without
importing each other.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
from ..errors import RationalRewardsError


class GroundingModelNotFound(RationalRewardsError, FileNotFoundError):
    pass


class GroundingLoadError(RationalRewardsError, ValueError):
    """A file that is there but cannot be used; the message says why and what works instead."""


def read_tensors(path: Path):
    """The one ``torch.load`` of the pack: tensors only. Training checkpoints (IDEA's GroundingDINO among them) also pickle their
    ``argparse.Namespace`` of arguments: a plain attribute bag, allowed; anything else is refused."""
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:   # UnpicklingError for pickles that hold code or custom classes
        raise GroundingLoadError(f"{path.name} could not be read as plain tensors (weights_only=True): "
                                 f"{str(e).splitlines()[0][:200]}. The pack never unpickles code; use a "
                                 "safetensors / Hugging Face format copy of this model") from None
