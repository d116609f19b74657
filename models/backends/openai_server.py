"""Server backend: critiques from an OpenAI-compatible ``/v1/chat/completions`` API.

For ``vllm serve`` (the fast path for an 8B critic), ``transformers serve`` or a hosted API.
Plain ``requests`` instead of the ``openai`` package keeps the pack's dependencies small.

Decisions worth knowing:

* The API key is read from an environment variable whose *name* is configured, at request
  time: ComfyUI saves every node input into the workflow and into each PNG it writes, so
  the key itself must never be an input. Nothing here stores, logs or prints the key.
* Images go as lossless PNG data URLs in ``image_url`` parts, in the request's part order.
* Retries (tenacity) with jittered exponential backoff on connection errors, HTTP 429 and 5xx;
  ``Retry-After`` is honoured, in seconds or as an HTTP date, capped at ``backoff_max_s``. Never
  on other 4xx, and never on a read timeout: the server may still be generating, and a retry
  would queue the same critique twice.
* ``forced`` answers (replay/testing seam): a server cannot be forced token by token. The
  request is still sent -- with ``max_tokens=1`` so it costs the server next to nothing --
  which checks the connection, key, model name and image upload; then the forced text
  replaces the server's answer.
* ``should_stop`` is polled while requests run, between retries and during backoff:
  pending requests are cancelled and :class:`GenerationInterrupted` is raised at once.
  Requests already on the wire are abandoned (the server finishes them).
* ``progress`` reports each finished request as one whole generation: ``(0, budget)`` then
  ``(budget, budget)`` (``batch_size`` is 1, so a progress bar counts requests).
* Optional GPU sharing with vLLM's sleep mode (``vllm serve --enable-sleep-mode`` with
  ``VLLM_SERVER_DEV_MODE=1``): :meth:`OpenAIServerBackend.sleep` / :meth:`wake_up`, and
  ``sleep_between_runs`` wakes the server before a batch of critiques and puts it back to
  sleep after, so the generator gets the memory in between.
"""
from __future__ import annotations

import base64
import io
import logging
import os
import re
import threading
import time
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from typing import Iterator, Sequence
from urllib.parse import urlsplit

import requests
import tenacity

from ..critic.images import CriticInput, as_pil
from ..critic.prompting import ChatRequest
from .base import Backend, GenerationInterrupted, GenerationOptions, ProgressFn, StopFn, StreamFn
from ..errors import RationalRewardsError

log = logging.getLogger(__name__)

ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
POLL_S = 0.05
# Sampling fields outside the OpenAI schema (vLLM accepts them). A server that refuses one by name gets
# the request again without it, and the log says its own default applies there.
OPTIONAL_FIELDS = ("top_k", "repetition_penalty")


class ServerError(RationalRewardsError, RuntimeError):
    """The critic server gave no usable answer; the message says what to fix."""


class ServerUnavailable(ServerError):
    """Cannot connect, or the server kept answering 429/5xx through every retry."""


class ServerTimeout(ServerError):
    """No answer within ``timeout_s``."""


class ServerAnswerError(ServerError):
    """The server answered, but not with a chat completion (not JSON, no choices, no text)."""


class ModelNotServed(ServerError):
    """The server does not serve the configured model name."""


class ApiKeyError(ServerError):
    """The API key variable is missing or the server refused the key."""


def normalize_base_url(url: str) -> str:
    """``http(s)://host[:port]/prefix`` without a trailing slash or a pasted ``/chat/completions``."""
    url = (url or "").strip().rstrip("/")
    for suffix in ("/chat/completions", "/completions"):
        if url.endswith(suffix):
            url = url[: -len(suffix)]
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"base_url must look like http://127.0.0.1:8000/v1 (scheme, host, port and the "
                         f"API prefix); got {url!r}")
    return url


def check_env_name(name: str) -> str:
    """The variable *name* (may be empty). Refuses anything that looks like a pasted key, without echoing it."""
    name = (name or "").strip()
    if not name:
        return ""
    pasted = ENV_NAME.match(name) is None or (
        len(name) >= 24 and any(c.islower() for c in name) and any(c.isdigit() for c in name))
    if pasted:
        raise ApiKeyError("api_key_env takes the NAME of an environment variable that holds the key (letters, "
                          "digits and underscores, e.g. OPENAI_API_KEY), not the key itself. What was typed "
                          "looks like a key: it is now saved in this workflow and in the metadata of images it "
                          "saved, so remove it from the node and rotate the key if it was real.")
    return name


def image_data_url(img: CriticInput) -> str:
    """A lossless PNG ``data:`` URL of the image as the critic is given it (for a ComfyUI tensor: the one
    8-bit conversion, fitted to ``max_pixels``; the server's processor then resizes it to its grid)."""
    buf = io.BytesIO()
    as_pil(img).save(buf, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def chat_messages(req: ChatRequest) -> list[dict]:
    """OpenAI chat messages for one request: text and ``image_url`` parts in the request's order."""
    content = [{"type": "image_url", "image_url": {"url": image_data_url(part)}} if kind == "image"
               else {"type": "text", "text": part} for kind, part in req.parts]
    msgs = [{"role": "system", "content": req.system}] if req.system else []
    return msgs + [{"role": "user", "content": content}]


def chat_body(req: ChatRequest, options: GenerationOptions, model: str, max_tokens: int | None = None) -> dict:
    """The ``/chat/completions`` request body; temperature 0 means greedy on vLLM and transformers serve.

    Every sampling parameter is explicit, so the server's ``generation_config`` defaults never apply:
    ``top_k`` -1 is vLLM's "off" (our 0), ``repetition_penalty`` 1.0 is off.
    """
    return {"model": model, "messages": chat_messages(req),
            "max_tokens": int(max_tokens or options.max_new_tokens), "temperature": float(options.temperature),
            "top_p": float(options.top_p), "top_k": int(options.top_k) if options.top_k > 0 else -1,
            "repetition_penalty": float(options.repetition_penalty), "seed": int(options.seed), "stream": False}


def _snippet(text: str, n: int = 200) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= n else text[:n] + "..."


def _error_message(resp: requests.Response) -> str:
    """The server's own error text (OpenAI ``error.message``, FastAPI ``detail``), else the body's start."""
    try:
        data = resp.json()
    except ValueError:
        return _snippet(resp.text) or resp.reason or ""
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, dict):
            err = err.get("message") or err.get("detail") or err
        msg = err if isinstance(err, str) else data.get("detail") or data.get("message") or data
        return _snippet(msg if isinstance(msg, str) else str(msg))
    return _snippet(str(data))


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """A ``Retry-After`` header as seconds from ``now``: delay-seconds or an HTTP date (RFC 9110);
    None when absent or unreadable, 0 for a date in the past."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:          # HTTP dates are GMT
            when = when.replace(tzinfo=timezone.utc)
        seconds = (when - (now or datetime.now(timezone.utc))).total_seconds()
    return None if seconds != seconds else max(0.0, seconds)


class _Transient(Exception):
    """A failure worth retrying (connection error, HTTP 429 or 5xx); ``resp`` is the answer, if any."""

    def __init__(self, failure: str, resp: requests.Response | None):
        super().__init__(failure)
        self.failure, self.resp = failure, resp


class OpenAIServerBackend(Backend):
    """Chat completions over HTTP, several requests at a time. Holds configuration only (no key)."""

    name = "openai-server"
    concurrent = True   # one request per thread, up to max_concurrency
    batch_size = 1      # one request = one generation, for progress bars (see module docstring)

    def __init__(self, base_url: str, model: str, *, api_key_env: str = "", max_concurrency: int = 4,
                 timeout_s: float = 300.0, retries: int = 3, backoff_s: float = 1.0, backoff_max_s: float = 30.0,
                 connect_timeout_s: float = 10.0, sleep_between_runs: bool = False, sleep_level: int = 1):
        self.base_url = normalize_base_url(base_url)
        self.model = (model or "").strip()
        self.api_key_env = check_env_name(api_key_env)
        if max_concurrency < 1 or retries < 0 or timeout_s <= 0 or backoff_s < 0:
            raise ValueError("max_concurrency must be >= 1, retries >= 0, timeout_s > 0 and backoff_s >= 0")
        self.max_concurrency, self.retries = int(max_concurrency), int(retries)
        self.timeout_s, self.connect_timeout_s = float(timeout_s), float(min(connect_timeout_s, timeout_s))
        self.backoff_s, self.backoff_max_s = float(backoff_s), float(backoff_max_s)
        self.sleep_between_runs, self.sleep_level = bool(sleep_between_runs), int(sleep_level)
        self._local = threading.local()
        self._sleep_lock = threading.Lock()
        self._active = 0
        self._refused: set[str] = set()   # optional sampling fields this server said it does not know

    @property
    def model_name(self) -> str:
        return self.model

    def decoding_mode(self) -> str:
        return "server"

    def __repr__(self) -> str:
        return (f"OpenAIServerBackend({self.base_url!r}, model={self.model!r}, api_key_env={self.api_key_env!r}, "
                f"max_concurrency={self.max_concurrency})")

    @property
    def root_url(self) -> str:
        """The server root (``base_url`` without its ``/v1``): where vLLM's sleep endpoints live."""
        return self.base_url[:-3] if self.base_url.endswith("/v1") else self.base_url

    # -- HTTP plumbing ----------------------------------------------------------------------------
    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
            # a local server is never reached through the user's HTTP proxy
            session.trust_env = urlsplit(self.base_url).hostname not in LOOPBACK
        return session

    def _headers(self) -> dict[str, str]:
        key = self.api_key()
        return {"Authorization": f"Bearer {key}"} if key else {}

    def api_key(self) -> str | None:
        """The key from ``$api_key_env`` (None when no variable is configured)."""
        if not self.api_key_env:
            return None
        key = os.environ.get(self.api_key_env, "").strip()
        if not key:
            raise ApiKeyError(f"the critic server's API key is read from the environment variable "
                              f"{self.api_key_env}, which is not set in the environment ComfyUI runs in. Set it "
                              f"there (export {self.api_key_env}=...) and restart ComfyUI, or clear api_key_env "
                              "for a server without a key.")
        return key

    def _send(self, method: str, url: str, *, json: dict | None = None, timeout: float | None = None,
              stopped: StopFn | None = None, retry: bool = True) -> requests.Response:
        """One call with retries on connection errors, 429 and 5xx; returns any other response."""
        tries = self.retries + 1 if retry else 1

        def attempt() -> requests.Response:
            if stopped is not None and stopped():
                raise GenerationInterrupted("critique requests were cancelled")
            try:
                resp = self._session().request(method, url, json=json, headers=self._headers(),
                                               timeout=(self.connect_timeout_s, timeout or self.timeout_s))
            except requests.exceptions.ConnectionError as e:   # refused, DNS, reset, connect timeout
                raise _Transient(f"cannot reach the critic server at {url} ({_reason(e)})", None) from None
            except requests.exceptions.Timeout:
                waited = timeout or self.timeout_s
                raise ServerTimeout(f"the critic server at {url} sent no answer within {waited:g} s. "
                                    "Raise timeout_s (a 2048-token critique on a busy server can take minutes), "
                                    "lower max_new_tokens, or check the server's log.") from None
            except requests.exceptions.RequestException as e:   # a broken answer stream and the like
                raise ServerError(f"the request to the critic server at {url} failed ({type(e).__name__}: "
                                  f"{_snippet(str(e))}); check the server's log.") from None
            if resp.status_code == 429 or resp.status_code >= 500:
                raise _Transient(f"the critic server at {url} answered HTTP {resp.status_code}: "
                                 f"{_error_message(resp)}", resp)
            return resp

        retrying = tenacity.Retrying(stop=tenacity.stop_after_attempt(tries), wait=self._wait,
                                     retry=tenacity.retry_if_exception_type(_Transient),
                                     sleep=lambda seconds: self._sleep(seconds, stopped), reraise=True)
        try:
            return retrying(attempt)
        except _Transient as last:
            resp = last.resp
            what = "retry later or lower max_concurrency" if resp is not None and resp.status_code == 429 else (
                "check the server's log" if resp is not None else
                "start the server (e.g. `vllm serve ...`) or fix base_url")
            raise ServerUnavailable(f"{last.failure} (tried {tries} time{'s' * (tries > 1)}); {what}.") from None

    def _wait(self, state: tenacity.RetryCallState) -> float:
        """The pause before the next try: the server's ``Retry-After`` when it sent one, else exponential
        backoff with jitter (so clients that failed together do not retry together); capped."""
        failure = state.outcome.exception() if state.outcome is not None else None
        resp = getattr(failure, "resp", None)
        asked = retry_after_seconds(resp.headers.get("Retry-After")) if resp is not None else None
        if asked is not None:
            return min(self.backoff_max_s, asked)
        backoff = (tenacity.wait_exponential(multiplier=self.backoff_s, max=self.backoff_max_s)
                   + tenacity.wait_random(0, self.backoff_s))
        return min(self.backoff_max_s, backoff(state))

    @staticmethod
    def _sleep(seconds: float, stopped: StopFn | None) -> None:
        """A backoff that ends at once when the user cancels."""
        deadline = time.monotonic() + max(0.0, seconds)
        while (left := deadline - time.monotonic()) > 0:
            if stopped is not None and stopped():
                raise GenerationInterrupted("critique requests were cancelled")
            time.sleep(min(POLL_S, left))

    # -- models ------------------------------------------------------------------------------------
    def list_models(self) -> list[str] | None:
        """Model ids from ``GET /models``; None when the server does not tell (down, no such route, garbage)."""
        try:
            return _model_ids(self._send("GET", self.base_url + "/models", timeout=min(self.timeout_s, 30.0),
                                         retry=False))
        except ServerError:
            return None

    def check(self) -> str:
        """Fail early: the key variable is set, the server answers, and it serves ``model``.

        An empty ``model`` becomes the server's only model. Returns the model name."""
        self.api_key()
        url = self.base_url + "/models"
        resp = self._send("GET", url, timeout=min(self.timeout_s, 30.0))
        if resp.status_code in (401, 403):
            raise self._client_error(resp, url)
        served = _model_ids(resp)
        if served is not None and not self.model:
            if len(served) != 1:
                raise ModelNotServed(f"no model name was given and the critic server at {self.base_url} serves "
                                     f"{len(served)} models: {', '.join(served) or '(none)'}; type one of them.")
            self.model = served[0]
        elif served is not None and self.model not in served:
            raise self._not_served(served)
        if not self.model:
            raise ModelNotServed(f"no model name was given and the server at {self.base_url} does not list its "
                                 "models; type the model name it serves")
        return self.model

    def _not_served(self, served: list[str]) -> ModelNotServed:
        return ModelNotServed(f"the critic server at {self.base_url} does not serve a model named {self.model!r}; "
                              f"it serves: {', '.join(served) or '(none listed)'}. Set 'model' to one of these "
                              "(for vLLM: the --served-model-name, or the id or path it was started with).")

    def _client_error(self, resp: requests.Response, url: str) -> ServerError:
        msg, code = _error_message(resp), resp.status_code
        if code in (401, 403):
            fix = (f"check the key in ${self.api_key_env}" if self.api_key_env else
                   "set api_key_env to the name of an environment variable that holds the key")
            return ApiKeyError(f"the critic server at {self.base_url} refused the request (HTTP {code}: {msg}); {fix}.")
        if code == 404 or "model" in msg.lower():
            served = self.list_models()
            if served is not None and self.model not in served:
                return self._not_served(served)
            if code == 404:
                return ServerError(f"the critic server answered HTTP 404 for {url}: {msg}. Check base_url: "
                                   "OpenAI-compatible servers answer under a prefix such as "
                                   "http://127.0.0.1:8000/v1.")
        return ServerError(f"the critic server at {url} refused the request (HTTP {code}): {msg}")

    # -- one chat completion ------------------------------------------------------------------------
    def complete(self, req: ChatRequest, options: GenerationOptions, *, forced: str | None = None,
                 stopped: StopFn | None = None) -> str:
        """The answer text for one request (or ``forced``, after a 1-token request; see module docstring)."""
        url = self.base_url + "/chat/completions"
        body = chat_body(req, options, self.model, max_tokens=1 if forced is not None else None)
        for key in self._refused:
            body.pop(key, None)
        resp = self._send("POST", url, json=body, stopped=stopped)
        refused = self._refused_fields(resp, body)
        if refused:   # e.g. `transformers serve` (HTTP 422) knows no top_k / repetition_penalty
            with self._sleep_lock:
                new = refused - self._refused
                self._refused |= refused
            if new:
                log.warning("RationalRewards: the critic server at %s refuses %s; its own defaults apply to them",
                            self.base_url, ", ".join(sorted(new)))
            for key in refused:
                body.pop(key, None)
            resp = self._send("POST", url, json=body, stopped=stopped)
        if not resp.ok:
            raise self._client_error(resp, url)
        answer = self._answer_text(resp, url)
        return forced if forced is not None else answer

    @staticmethod
    def _refused_fields(resp: requests.Response, body: dict) -> set[str]:
        """The optional sampling fields a 400/422 answer names as unknown (only those may be dropped)."""
        if resp.status_code not in (400, 422):
            return set()
        msg = _error_message(resp)
        return {k for k in OPTIONAL_FIELDS if k in body and k in msg}

    def _answer_text(self, resp: requests.Response, url: str) -> str:
        try:
            data = resp.json()
        except ValueError:
            raise ServerAnswerError(f"the critic server at {url} answered HTTP {resp.status_code} with something "
                                    f"that is not JSON: {_snippet(resp.text)!r}. Is base_url an OpenAI-compatible "
                                    "API (such as http://127.0.0.1:8000/v1), not a web page or a proxy?") from None
        choices = data.get("choices") if isinstance(data, dict) else None
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            detail = _error_message(resp) if isinstance(data, dict) and "error" in data else _snippet(str(data))
            raise ServerAnswerError(f"the critic server at {url} answered without a chat completion "
                                    f"('choices' missing or empty): {detail}")
        message = choices[0].get("message") or {}
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):   # some servers return content parts
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        if not isinstance(content, str):
            raise ServerAnswerError(f"the critic server at {url} answered without text (finish_reason="
                                    f"{choices[0].get('finish_reason')!r}); check that {self.model!r} is a chat model")
        return content

    # -- the Backend protocol -------------------------------------------------------------------------
    def generate(self, requests_: Sequence[ChatRequest], options: GenerationOptions, *,
                 forced: Sequence[str | None] | None = None, progress: ProgressFn | None = None,
                 should_stop: StopFn | None = None, stream: StreamFn | None = None) -> list[str]:
        forced = list(forced) if forced is not None else [None] * len(requests_)
        if len(forced) != len(requests_):
            raise ValueError("forced must have one entry per request")
        if not requests_:
            return []
        if not self.model:
            raise ValueError("no model name: call check() or give the model the server serves")
        self.api_key()   # a missing key fails before anything is sent
        with self.awake():
            return self._run_all(list(requests_), forced, options, progress, should_stop, stream)

    def _run_all(self, reqs: list[ChatRequest], forced: list[str | None], options: GenerationOptions,
                 progress: ProgressFn | None, should_stop: StopFn | None,
                 stream: StreamFn | None = None) -> list[str]:
        cancel = threading.Event()

        def stopped() -> bool:
            return cancel.is_set() or bool(should_stop and should_stop())

        answers: list[str | None] = [None] * len(reqs)
        budget = options.max_new_tokens
        pool = ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(reqs)),
                                  thread_name_prefix="rr-critic-server")
        try:
            futures: dict[Future, int] = {
                pool.submit(self.complete, r, options, forced=f, stopped=stopped): i
                for i, (r, f) in enumerate(zip(reqs, forced))}
            pending = set(futures)
            while pending:
                done, pending = wait(pending, timeout=POLL_S, return_when=FIRST_COMPLETED)
                for fut in done:
                    try:
                        answers[futures[fut]] = fut.result()   # the first failure ends the whole call
                    except ServerError as e:
                        raise _with_progress(e, answers) from None
                    if stream is not None:
                        stream(futures[fut], [answers[futures[fut]]], True)
                    if progress is not None:
                        progress(0, budget)
                        progress(budget, budget)
                if pending and should_stop is not None and should_stop():
                    raise GenerationInterrupted("critique generation was interrupted")
        except BaseException:
            cancel.set()
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
        return [a if a is not None else "" for a in answers]

    # -- vLLM sleep mode ----------------------------------------------------------------------------
    def _sleep_call(self, method: str, path: str) -> requests.Response:
        url = self.root_url + path
        resp = self._send(method, url)
        if resp.status_code == 404:
            raise ServerError(f"the critic server has no {path.split('?')[0]} endpoint ({url} answered 404). Sleep "
                              "mode needs vLLM started with --enable-sleep-mode and the environment variable "
                              "VLLM_SERVER_DEV_MODE=1; or turn sleep_between_runs off.")
        if not resp.ok:
            raise ServerError(f"the critic server refused {method} {url} (HTTP {resp.status_code}): "
                              f"{_error_message(resp)}. Was vLLM started with --enable-sleep-mode?")
        return resp

    def sleep(self, level: int | None = None) -> None:
        """vLLM ``POST /sleep?level=N``: level 1 moves the weights to host RAM and drops the KV cache."""
        self._sleep_call("POST", f"/sleep?level={int(level or self.sleep_level)}")

    def wake_up(self) -> None:
        """vLLM ``POST /wake_up``: weights back on the GPU; returns when the server is ready."""
        self._sleep_call("POST", "/wake_up")

    def is_sleeping(self) -> bool:
        try:
            return bool(self._sleep_call("GET", "/is_sleeping").json().get("is_sleeping"))
        except (ValueError, AttributeError):
            raise ServerAnswerError(f"{self.root_url}/is_sleeping did not answer {{\"is_sleeping\": ...}}") from None

    @contextmanager
    def awake(self) -> Iterator[None]:
        """With ``sleep_between_runs``: wake before, sleep after (also after a failure; nested calls share)."""
        if not self.sleep_between_runs:
            yield
            return
        with self._sleep_lock:
            if self._active == 0:
                self.wake_up()
            self._active += 1
        ok = False
        try:
            yield
            ok = True
        finally:
            with self._sleep_lock:
                self._active -= 1
                if self._active == 0:
                    try:
                        self.sleep()
                    except ServerError:
                        if ok:
                            raise   # the user asked for the GPU back; say that it did not happen
                        log.warning("could not put the critic server back to sleep", exc_info=True)


def _with_progress(error: ServerError, answers: list[str | None]) -> ServerError:
    """``error`` saying how much of a batch was answered before it: those answers are not returned (a
    batch is all or nothing), so running it again asks for every one of them again."""
    if len(answers) < 2:
        return error
    finished = sum(a is not None for a in answers)
    return type(error)(f"{error} The batch stopped after {finished} of {len(answers)} critiques; run it "
                       "again once the server answers.")


def _model_ids(resp: requests.Response) -> list[str] | None:
    try:
        data = resp.json() if resp.ok else None
    except ValueError:
        return None
    items = data.get("data") if isinstance(data, dict) else None
    if not isinstance(items, list):
        return None
    return [str(m["id"]) for m in items if isinstance(m, dict) and "id" in m]


def _reason(e: Exception) -> str:
    text = str(e)
    for marker in ("Connection refused", "Name or service not known", "timed out", "Connection reset",
                   "Temporary failure in name resolution", "No route to host"):
        if marker.lower() in text.lower():
            return marker.lower()
    return type(e).__name__


__all__ = ["ApiKeyError", "ModelNotServed", "OpenAIServerBackend", "ServerAnswerError", "ServerError",
           "ServerTimeout", "ServerUnavailable", "chat_body", "chat_messages", "check_env_name", "image_data_url",
           "normalize_base_url"]
