"""The contract every critic backend meets."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

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


class GenerationInterrupted(RuntimeError):
    """Raised when ``should_stop`` asked generation to end early."""


class Backend(Protocol):
    name: str

    def generate(self, requests: Sequence[ChatRequest], options: GenerationOptions, *,
                 forced: Sequence[str | None] | None = None, progress: ProgressFn | None = None,
                 should_stop: StopFn | None = None, stream: StreamFn | None = None) -> list[str]:
        """One answer per request, in order.

        ``forced`` (same length as ``requests``) makes the model emit a given text
        for that request through its normal decoding path; it is the seam tests and
        the replay node use. ``None`` entries decode freely.
        """
        ...
