"""The contract every critic backend meets."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

from ..prompting import ChatRequest

ProgressFn = Callable[[int, int], None]   # (tokens done, token budget)
StopFn = Callable[[], bool]              # True when the user asked to stop
# (index of the first request of a batch, the text each of its rows has written so far, whether those
# texts are the finished answers): lets a caller follow the answer itself, not the token budget
StreamFn = Callable[[int, Sequence[str], bool], None]


@dataclass(frozen=True)
class GenerationOptions:
    max_new_tokens: int = 2048
    temperature: float = 0.1      # the authors' setting; 0 means greedy
    top_p: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError("max_new_tokens must be at least 1")
        if self.temperature < 0:
            raise ValueError("temperature must be >= 0")
        if not 0 < self.top_p <= 1:
            raise ValueError("top_p must be in (0, 1]")


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
