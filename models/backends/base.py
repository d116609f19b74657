"""The contract every critic backend meets: :class:`Backend`.

A backend turns chat requests into answer texts and declares how it wants to be driven (how many
requests share one call, whether requests complete independently, what it calls its model, how it
decodes). Callers read these declarations; they never probe a backend for optional attributes.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable, ClassVar, Sequence

from ..errors import RationalRewardsError

from ..critic.prompting import ChatRequest

ProgressFn = Callable[[int, int], None]   # (tokens done, token budget)
StopFn = Callable[[], bool]              # True when the user asked to stop
# (index of the first request of a batch, the text each of its rows has written so far, whether those
# texts are the finished answers): lets a caller follow the answer itself, not the token budget
StreamFn = Callable[[int, Sequence[str], bool], None]


@dataclass(frozen=True)
class GenerationOptions:
    """Every sampling parameter a backend uses. Each one is sent explicitly (a server would otherwise fill
    unset ones from the checkpoint's ``generation_config.json``, e.g. Qwen's top_k 20 / top_p 0.8), so a
    served and an in-process critique of the same request sample alike."""
    max_new_tokens: int = 2048
    temperature: float = 0.1      # the authors' setting; 0 means greedy
    top_p: float = 1.0            # 1 = off
    seed: int = 0
    top_k: int = 0                # 0 = off (every token is a candidate)
    repetition_penalty: float = 1.0   # 1 = off

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError("max_new_tokens must be at least 1")
        if self.temperature < 0:
            raise ValueError("temperature must be >= 0")
        if not 0 < self.top_p <= 1:
            raise ValueError("top_p must be in (0, 1]")
        if self.top_k < 0:
            raise ValueError("top_k must be >= 0 (0 turns it off)")
        if self.repetition_penalty <= 0:
            raise ValueError("repetition_penalty must be > 0 (1 turns it off)")


class GenerationInterrupted(RationalRewardsError, RuntimeError):
    """Raised when ``should_stop`` asked generation to end early."""


class Backend(ABC):
    """What every critic backend offers (in-process transformers, ComfyUI's own runtime, a server).

    Declared members, read by the critic, the dispatcher and the nodes:

    * ``name`` -- the implementation (``transformers``, ``comfyui``, ``openai-server``);
    * ``model_name`` -- the model it answers with (checkpoint folder or served model name);
    * ``batch_size`` -- how many requests one :meth:`generate` call runs together (1: one at a time);
    * ``concurrent`` -- requests complete independently, so a caller may send one per thread through
      :meth:`complete`, up to ``max_concurrency`` at once (a server); otherwise one call at a time;
    * :meth:`decoding_mode` -- how this backend decodes now (``plain``, ``static``, ``compiled``, or
      ``server``); ``compiled`` and ``static`` pay a first-call cost per batch size;
    * :meth:`generate` -- one answer per request, in order; :meth:`complete` -- one request.
    """
    name: ClassVar[str] = ""
    concurrent: ClassVar[bool] = False
    batch_size: int = 1
    max_concurrency: int = 1

    @property
    @abstractmethod
    def model_name(self) -> str:
        """The model this backend answers with, as a user would name it."""

    def decoding_mode(self) -> str:
        return "plain"

    @abstractmethod
    def generate(self, requests: Sequence[ChatRequest], options: GenerationOptions, *,
                 forced: Sequence[str | None] | None = None, progress: ProgressFn | None = None,
                 should_stop: StopFn | None = None, stream: StreamFn | None = None) -> list[str]:
        """One answer per request, in order.

        ``forced`` (same length as ``requests``) makes the model emit a given text for that request
        through its normal decoding path; it is the seam tests and the replay node use. ``None``
        entries decode freely. ``progress`` counts tokens against the budget, ``should_stop`` is asked
        between steps (:class:`GenerationInterrupted` when it says yes), ``stream`` follows the text.
        """

    def complete(self, request: ChatRequest, options: GenerationOptions, *, forced: str | None = None,
                 stopped: StopFn | None = None) -> str:
        """One request's answer (what a caller sends per thread to a ``concurrent`` backend)."""
        return self.generate([request], options, forced=[forced], should_stop=stopped)[0]
