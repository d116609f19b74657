"""Flow-Factory reward models backed by :class:`~.reward.RationalReward`.

Importing this module imports Flow-Factory (``flow_factory.rewards.abc``); nothing else in the
package does, so Flow-Factory stays an optional dependency. In a Flow-Factory config:

    rewards:
      - name: rationalrewards
        reward_model: rationalrewards.flow_factory.RationalRewardsT2I      # or ...RationalRewardsEdit
        extra_kwargs:
          servers: [http://gpu1:8000/v1, http://gpu2:8000/v1]   # or api_base_url: one URL
          model: rationalrewards-t2i                          # the served model name (or vlm_model)
          max_concurrency: 8
          on_unreadable: zero                                 # or nan
          weights: equal                                      # edit default: rl_edit

``extra_info`` carries the per-dimension scores (1-4, NaN where N/A or unreadable), the unreadable
mask and the refined prompts.
"""
from __future__ import annotations

from typing import Any, List, Optional

try:
    from flow_factory.rewards.abc import PointwiseRewardModel, RewardModelOutput
except ImportError as e:   # pragma: no cover - exercised by users without Flow-Factory
    raise ImportError("rationalrewards.flow_factory needs Flow-Factory (the flow_factory package) installed in this "
                      "environment; the rest of rationalrewards works without it") from e

from ..backends.base import GenerationOptions
from .reward import RationalReward
from ..judging.rubric import Task


def _reward_from_config(config: Any, task: Task) -> RationalReward:
    kw = dict(getattr(config, "extra_kwargs", None) or {})
    servers = kw.get("servers") or kw.get("api_base_url")
    if not servers:
        raise ValueError("RationalRewards reward: set extra_kwargs.servers (a list of OpenAI-compatible base URLs, "
                         "e.g. http://127.0.0.1:8000/v1 from `vllm serve`) or extra_kwargs.api_base_url")
    options = GenerationOptions(max_new_tokens=int(kw.get("max_tokens", 2048)),
                                temperature=float(kw.get("temperature", 0.1)))
    return RationalReward(servers=servers, model=str(kw.get("model") or kw.get("vlm_model") or ""), task=task,
                          weights=kw.get("weights"), on_unreadable=str(kw.get("on_unreadable", "zero")),
                          max_concurrency=int(kw.get("max_concurrency", kw.get("max_concurrent", 8))),
                          options=options, api_key_env=str(kw.get("api_key_env", "")),
                          timeout_s=float(kw.get("timeout", 300.0)), retries=int(kw.get("max_retries", 3)))


def _output(result, device) -> RewardModelOutput:
    import torch
    rewards = torch.tensor(result.overall, dtype=torch.float32, device=device)
    return RewardModelOutput(rewards=rewards, extra_info={
        "scores": result.scores, "unreadable": result.unreadable, "errors": result.errors, "rule": result.rule,
        "refined_prompts": [c.refined_request if c is not None else None for c in result.critiques]})


class RationalRewardsT2I(PointwiseRewardModel):
    """Text-to-image reward: ``model(prompt=[...], image=[PIL, ...])``."""
    required_fields = ("prompt", "image")
    use_tensor_inputs = False
    task = Task.T2I

    def __init__(self, config: Any, accelerator: Any):
        super().__init__(config, accelerator)
        self.reward = _reward_from_config(config, self.task)

    def __call__(self, prompt: List[str], image: Optional[list] = None, video: Optional[list] = None,
                 audio: Optional[list] = None, condition_images: Optional[list] = None,
                 condition_videos: Optional[list] = None, **kwargs) -> RewardModelOutput:
        if image is None and video is not None:
            image = [frames[0] for frames in video]   # a video is judged by its first frame
        if image is None:
            raise ValueError("RationalRewards reward: no image (or video) given")
        sources = None
        if self.task is Task.EDIT:
            if condition_images is None:
                raise ValueError("RationalRewards edit reward: condition_images (the source images) are required")
            sources = [c[0] if isinstance(c, (list, tuple)) else c for c in condition_images]
        return _output(self.reward(image, prompt, sources), self.device)


class RationalRewardsEdit(RationalRewardsT2I):
    """Editing reward: ``model(prompt=[...], image=[edited, ...], condition_images=[[source], ...])``."""
    required_fields = ("prompt", "image", "condition_images")
    task = Task.EDIT


__all__ = ["RationalRewardsEdit", "RationalRewardsT2I"]
