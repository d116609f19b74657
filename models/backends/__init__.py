"""Critic backends: something that turns chat requests into answer texts."""
from .base import Backend, GenerationInterrupted, GenerationOptions

__all__ = ["Backend", "GenerationInterrupted", "GenerationOptions"]
