"""RationalRewards core: rubric, templates, parser, critic backends. No ComfyUI imports here."""
from .critic import Critic, CritiqueInputError, Item, Ranked, rank
from .critique import Critique, DimensionResult, PairwiseCritique, ScoreStatus, Winner
from .parser import ParseError, parse_critique, parse_pairwise
from .rubric import DIMENSIONS, Task, dimensions_for

__all__ = ["Critic", "CritiqueInputError", "Item", "Ranked", "rank", "Critique", "DimensionResult",
           "PairwiseCritique", "ScoreStatus", "Winner", "ParseError", "parse_critique", "parse_pairwise",
           "DIMENSIONS", "Task", "dimensions_for"]
