"""ComfyUI V3 nodes over the RationalRewards core, one file per capability."""
from .compare import Compare
from .critique import CritiqueEdit, CritiqueImage
from .load_critic import LoadCritic, ReplayAnswers
from .rank import Rank

NODES = [LoadCritic, ReplayAnswers, CritiqueImage, CritiqueEdit, Compare, Rank]
