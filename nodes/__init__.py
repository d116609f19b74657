"""ComfyUI V3 nodes over the RationalRewards core, one file per capability, and the extension that lists them."""
from comfy_api.latest import ComfyExtension

from .common import register_model_folder
from .compare import Compare
from .critique import CritiqueEdit, CritiqueImage
from .load_critic import LoadCritic, ReplayAnswers
from .native_critic import LoadNativeCritic
from .localise import DefectPhrases, LoadGrounding, LocaliseDefects
from .loop import RefineLoopEnd, RefineLoopStart
from .rank import Rank
from .read_critique import CriticPrompt, ReadCritique
from .refine import RefinePrompt
from .repair import RepairLoopEnd, RepairLoopStart
from .save import SaveCritique
from .server_critic import ServerCritic

NODES = [LoadCritic, LoadNativeCritic, ReplayAnswers, CritiqueImage, CritiqueEdit, Compare, Rank, RefinePrompt,
         RefineLoopStart, RefineLoopEnd, ServerCritic, LoadGrounding, DefectPhrases, LocaliseDefects, RepairLoopStart,
         RepairLoopEnd, SaveCritique, ReadCritique, CriticPrompt]


class RationalRewardsExtension(ComfyExtension):
    """The pack as ComfyUI sees it (returned by ``comfy_entrypoint`` in the package root)."""

    async def get_node_list(self) -> list:
        return list(NODES)


__all__ = ["NODES", "RationalRewardsExtension", "register_model_folder"]
