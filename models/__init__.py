"""RationalRewards core (imported as ``rationalrewards``; no ComfyUI imports anywhere in it).

The folders are the architecture, bottom to top:

* ``judging/``  -- what a critique *is*: rubric, typed results, scoring rules, the answer parser,
  prompt refinement, loop state, ranking and tournaments, card payloads.
* ``critic/``   -- asking the critic: templates -> chat request (images sized), scripted answers,
  answer progress, and :class:`Critic`, the one way through to a backend.
* ``backends/`` -- turning chat requests into text: the declared :class:`Backend` contract, the
  in-process transformers backend and the OpenAI-compatible server backend.
* ``runtime/``  -- building critics: finding/downloading checkpoints, quantisation, the memory plan,
  host copies for residency, dependency checks, and the one factory (:func:`build_critic`).
* ``grounding/`` -- critique -> phrases -> GroundingDINO boxes -> SAM masks.
* ``toolkit/``  -- the headless tools: CLI, dispatcher, manifests, evaluation, PARROT, RL rewards.
"""
from . import _moved
from .critic.critic import Critic, CritiqueInputError, Item
from .judging.critique import Critique, DimensionResult, PairwiseCritique
from .judging.parser import ParseError, parse_critique, parse_pairwise
from .judging.ranking import Ranked, rank
from .judging.rubric import DIMENSIONS, Task, dimensions_for
from .judging.scores import ScoreStatus, Winner

_moved.install(__name__)

__all__ = ["Critic", "CritiqueInputError", "Item", "Ranked", "rank", "Critique", "DimensionResult",
           "PairwiseCritique", "ScoreStatus", "Winner", "ParseError", "parse_critique", "parse_pairwise",
           "DIMENSIONS", "Task", "dimensions_for"]
