"""Spread many judgements over one or several critics, one outcome per item.

The headless tools (critique at scale, the RL reward, preference evaluation, tournaments) all need
the same thing: many :class:`~.critic.Item` s judged with a bounded number of requests in flight,
a bad item reported without failing the rest, and a dead server stopping the run at once.

* Critics whose backend is ``concurrent`` (a server: :class:`~.backends.openai_server.OpenAIServerBackend`)
  get one request per item from a shared thread pool of ``max_concurrency`` workers; each request goes
  to the critic with the fewest requests in flight, so several vLLM replicas share the load. Retries,
  timeouts and error messages are the backend's own.
* Other critics (in-process models) get batches of their backend's ``batch_size`` under a lock:
  one model, one forward at a time, whichever thread asks.

Every item goes through :meth:`Critic.prepare` (the critic's one way to a backend), so an outcome
carries the prepared request and :meth:`Outcome.parsed` gives the same record on every path.

Items may be given as callables that build the item (open the image files): they run in the
workers, so decoding images overlaps with the model and a file that cannot be read is that item's
error. The dispatcher is thread-safe: concurrent :meth:`Dispatcher.run` calls share the pool, so
their requests together stay within ``max_concurrency``.
"""
from __future__ import annotations

import threading
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Sequence, Union

from PIL import Image

from ..backends.base import GenerationInterrupted, GenerationOptions
from ..backends.openai_server import ApiKeyError, ModelNotServed, ServerError, ServerUnavailable
from ..critic.critic import Critic, CritiqueInputError, Item, Request
from ..judging.critique import Critique, PairwiseCritique
from ..critic.images import ImageError

Job = Union[Item, Callable[[], Item]]

# The item itself is bad (missing or unreadable image, empty prompt): skipped, reported with its id.
INPUT_ERRORS: tuple[type[BaseException], ...] = (CritiqueInputError, ImageError, OSError,
                                                 Image.DecompressionBombError)
# A failure of one item: reported with it, the others go on.
ITEM_ERRORS: tuple[type[BaseException], ...] = INPUT_ERRORS + (ServerError,)
# A failure that every later item would hit too: the run stops (and can be resumed).
FATAL_ERRORS: tuple[type[BaseException], ...] = (ServerUnavailable, ApiKeyError, ModelNotServed,
                                                 GenerationInterrupted)


@dataclass
class Outcome:
    """The result for the job at ``index``: ``answer`` (raw critic text) or ``error``; ``request`` is the
    prepared request (None when the item could not be built or prepared)."""
    index: int
    request: Request | None = None
    answer: str | None = None
    error: BaseException | None = None
    critic: Critic | None = None

    @property
    def item(self) -> Item | None:
        return self.request.item if self.request is not None else None

    def parsed(self) -> Critique | PairwiseCritique:
        """The answer read by the parser, with the request's record (template, image size)."""
        return Critic.parse(self.request, self.answer or "")

    @property
    def ok(self) -> bool:
        return self.error is None and self.answer is not None

    @property
    def bad_input(self) -> bool:
        """The item could not be built or judged as given (not a server failure)."""
        return isinstance(self.error, INPUT_ERRORS)

    @property
    def error_text(self) -> str:
        return "" if self.error is None else f"{type(self.error).__name__}: {self.error}"


def is_server(critic: Critic) -> bool:
    """Requests to this critic complete independently (one per thread), as a server's do."""
    return critic.backend.concurrent


def error_is_fatal(error: BaseException) -> bool:
    return isinstance(error, FATAL_ERRORS) or not isinstance(error, ITEM_ERRORS)


class Dispatcher:
    """Judges items on ``critics`` with at most ``max_concurrency`` server requests in flight."""

    def __init__(self, critics: Critic | Sequence[Critic], max_concurrency: int | None = None):
        critics = [critics] if isinstance(critics, Critic) else list(critics)
        if not critics:
            raise ValueError("give at least one critic (or one server URL)")
        servers = [is_server(c) for c in critics]
        if any(servers) and not all(servers):
            raise ValueError("mix of server and in-process critics: give one kind")
        self.critics = critics
        self.server_mode = servers[0]
        if not self.server_mode and len(critics) > 1:
            raise ValueError("several in-process critics would share one process; use one, or serve them")
        default = sum(c.backend.max_concurrency for c in critics) if self.server_mode else 1
        self.max_concurrency = int(max_concurrency or default)
        if self.max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        self._lock = threading.Lock()
        self._model_lock = threading.Lock()
        self._in_flight = [0] * len(critics)
        self._pool: ThreadPoolExecutor | None = None

    # -- lifetime -------------------------------------------------------------------------------------
    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> "Dispatcher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self.max_concurrency, thread_name_prefix="rr-dispatch")
            return self._pool

    # -- picking a critic -------------------------------------------------------------------------------
    def _acquire(self) -> int:
        with self._lock:
            i = min(range(len(self.critics)), key=lambda k: (self._in_flight[k], k))
            self._in_flight[i] += 1
            return i

    def _release(self, i: int) -> None:
        with self._lock:
            self._in_flight[i] -= 1

    # -- running ----------------------------------------------------------------------------------------
    def run(self, jobs: Iterable[Job], options: GenerationOptions | None = None, *, ordered: bool = False,
            should_stop: Callable[[], bool] | None = None) -> Iterator[Outcome]:
        """Yield one :class:`Outcome` per job (completion order, or input order with ``ordered``).

        Item errors (a missing file, an empty prompt, a server's 4xx or timeout) come back as outcomes;
        fatal errors (server down, wrong key or model, interrupted) are raised and the rest is cancelled.
        """
        options = options or GenerationOptions()
        gen = self._run_server(jobs, options, should_stop) if self.server_mode else self._run_local(jobs, options)
        if not ordered:
            yield from gen
            return
        waiting: dict[int, Outcome] = {}
        nxt = 0
        for out in gen:
            waiting[out.index] = out
            while nxt in waiting:
                yield waiting.pop(nxt)
                nxt += 1

    def map(self, jobs: Sequence[Job], options: GenerationOptions | None = None) -> list[Outcome]:
        """All outcomes, in input order."""
        return list(self.run(jobs, options, ordered=True))

    def _run_server(self, jobs: Iterable[Job], options: GenerationOptions,
                    should_stop: Callable[[], bool] | None) -> Iterator[Outcome]:
        cancel = threading.Event()

        def stopped() -> bool:
            return cancel.is_set() or bool(should_stop and should_stop())

        pool = self._executor()
        window = 2 * self.max_concurrency   # keeps workers busy without loading every image at once
        pending: set[Future] = set()
        order: deque = deque()
        try:
            for index, job in enumerate(jobs):
                if stopped():
                    raise GenerationInterrupted("critique requests were cancelled")
                fut = pool.submit(self._one_request, index, job, options, stopped)
                pending.add(fut)
                order.append(fut)
                while len(pending) >= window:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    yield from (self._result(f) for f in done)
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                yield from (self._result(f) for f in done)
        finally:
            if pending:
                cancel.set()
                for f in pending:
                    f.cancel()

    @staticmethod
    def _result(fut: Future) -> Outcome:
        return fut.result()   # fatal errors propagate from here

    def _one_request(self, index: int, job: Job, options: GenerationOptions,
                     stopped: Callable[[], bool]) -> Outcome:
        if stopped():
            raise GenerationInterrupted("critique requests were cancelled")
        slot = self._acquire()
        critic = self.critics[slot]
        request = None
        try:
            request = critic.prepare(job() if callable(job) else job)
            answer = critic.backend.complete(request.chat, options, forced=request.forced, stopped=stopped)
            return Outcome(index, request, answer, None, critic)
        except BaseException as e:   # noqa: BLE001 - sorted into item errors and fatal ones
            if error_is_fatal(e):
                raise
            return Outcome(index, request, None, e, critic)
        finally:
            self._release(slot)

    def _run_local(self, jobs: Iterable[Job], options: GenerationOptions) -> Iterator[Outcome]:
        critic = self.critics[0]
        size = max(1, critic.backend.batch_size)
        batch: list[tuple[int, Request]] = []
        for index, job in enumerate(jobs):
            try:   # prepared (and so validated) now: a bad item never takes its batch down
                batch.append((index, critic.prepare(job() if callable(job) else job)))
            except BaseException as e:   # noqa: BLE001
                if error_is_fatal(e):
                    raise
                yield Outcome(index, None, None, e, critic)
                continue
            if len(batch) >= size:
                yield from self._local_batch(critic, batch, options)
                batch = []
        if batch:
            yield from self._local_batch(critic, batch, options)

    def _local_batch(self, critic: Critic, batch: list[tuple[int, Request]],
                     options: GenerationOptions) -> list[Outcome]:
        with self._model_lock:
            answers = critic.answer([r for _, r in batch], options)
        return [Outcome(i, r, a, None, critic) for (i, r), a in zip(batch, answers)]


__all__ = ["Dispatcher", "FATAL_ERRORS", "INPUT_ERRORS", "ITEM_ERRORS", "Job", "Outcome", "error_is_fatal", "is_server"]
