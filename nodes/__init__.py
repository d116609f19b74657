"""ComfyUI V3 nodes over the RationalRewards core, one file per capability."""
from .compare import Compare
from .critique import CritiqueEdit, CritiqueImage
from .load_critic import LoadCritic, ReplayAnswers
from .loop import RefineLoopEnd, RefineLoopStart
from .rank import Rank
from .refine import RefinePrompt
from .server_critic import ServerCritic

NODES = [LoadCritic, ReplayAnswers, CritiqueImage, CritiqueEdit, Compare, Rank, RefinePrompt, RefineLoopStart,
         RefineLoopEnd,
         ServerCritic]

from .localise import DefectPhrases, LoadGrounding, LocaliseDefects  # noqa: E402  (defect localisation, #4)

NODES += [LoadGrounding, DefectPhrases, LocaliseDefects]
