"""Asking the critic: templates and images -> chat request, scripted answers, answer progress, and
:class:`Critic`, the one way every caller reaches a backend."""
from ..judging.ranking import Ranked, rank, rank_rows, rank_table  # noqa: F401 (old ``rationalrewards.critic`` names)
from .critic import Critic, CritiqueInputError, Item

__all__ = ["Critic", "CritiqueInputError", "Item"]
