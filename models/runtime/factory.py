"""The one factory for critics: a spec in, a ready :class:`Critic` out.

Every critic -- Load Critic, Connect to Critic Server, the CLI, PARROT's teacher, the RL reward, a
Ray worker -- is built here from one spec, so its options are resolved once (``max_pixels`` from the
checkpoint or served model name, templates from the checkpoint's own folder then the user's) and the
same checks run for every kind: a broken user template fails when the critic is built, naming the
file, whether the critic is in-process or served.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Sequence, Union

from ..critic.critic import Critic
from ..critic.prompting import check_templates
from . import memory_plan
from .checkpoints import AUTO_MAX_PIXELS, DownloadProgress, check_checkpoint, resolve_checkpoint, resolve_max_pixels

log = logging.getLogger("RationalRewards")


@dataclass(frozen=True)
class CheckpointSpec:
    """An in-process critic from a checkpoint folder (or a Hugging Face id, fetched only when allowed).

    Args:
        name: a folder name in ``search_dirs``, a path, or a Hugging Face id.
        search_dirs: where checkpoint folders live (ComfyUI's ``models/rationalrewards``).
        path: the folder, when already resolved (skips the search).
        dtype, device, attention, batch_size, decoding, quantization: the transformers load options
            (see :class:`~rationalrewards.backends.transformers_backend.TransformersBackend`).
        adapter: a local LoRA folder (PEFT) trained on this checkpoint, merged in at load time.
        max_pixels: -1 = what the checkpoint was trained on; 0/None = the processor decides; N = at most N.
        template_dirs: user template folders, read after the checkpoint's own ``templates/``.
    """
    name: str
    search_dirs: tuple[str, ...] = ()
    allow_download: bool = False
    path: str | None = None
    dtype: str = "auto"
    device: str = "auto"
    attention: str = "sdpa"
    batch_size: int = 4
    decoding: str = "auto"
    quantization: str = "none"
    adapter: str | None = None
    max_pixels: int | None = AUTO_MAX_PIXELS
    template_dirs: tuple[str, ...] = ()
    new_tokens: int = 2048          # the token budget the memory plan sizes the KV cache for


@dataclass(frozen=True)
class ServerSpec:
    """A critic served by an OpenAI-compatible server (vLLM, ``transformers serve``...).

    Args:
        url: the server's base URL (``http://host:8000/v1``).
        model: the served model name ("" = the server's only model).
        api_key_env: the *name* of an environment variable holding the key (never the key itself).
        check: ask the server for its models now, so a wrong URL or model fails at build time.
        label: how records name this critic (default: the model name).
    """
    url: str
    model: str = ""
    api_key_env: str = ""
    max_concurrency: int = 4
    timeout_s: float = 300.0
    retries: int = 3
    sleep_between_runs: bool = False
    max_pixels: int | None = AUTO_MAX_PIXELS
    template_dirs: tuple[str, ...] = ()
    check: bool = True
    label: str = ""


CriticSpec = Union[CheckpointSpec, ServerSpec]
Budget = Callable[[], int]      # bytes a critique may use on its device now (free + evictable)


def resolve(spec: CheckpointSpec, progress: DownloadProgress | None = None) -> CheckpointSpec:
    """The spec with its checkpoint folder found (downloaded only when ``allow_download``)."""
    if spec.path is not None:
        return spec
    path = resolve_checkpoint(spec.name, spec.search_dirs, allow_download=spec.allow_download, progress=progress)
    return replace(spec, path=str(path))


def plan(spec: CheckpointSpec, pixels: int | None):
    """(shape, memory plan) of one critique with ``spec`` (resolved) at images of up to ``pixels`` (the
    resolved ``max_pixels``), or None for an architecture the plan has no shape for (the critic then loads
    without one; the log says so)."""
    path = Path(spec.path)
    try:
        shape = memory_plan.shape_from_folder(path)
        dtype = spec.dtype if spec.dtype != "auto" else "bf16"
        return shape, memory_plan.plan(shape, quantization=spec.quantization, dtype=dtype, batch=spec.batch_size,
                                       image_pixels=pixels or memory_plan.DEFAULT_IMAGE_PIXELS,
                                       new_tokens=spec.new_tokens, attention=spec.attention)
    except (KeyError, TypeError, ValueError, OSError) as e:
        log.warning("RationalRewards: no memory plan for %s (%s: %s); loading without one", path.name,
                    type(e).__name__, e)
        return None


def check_fits(spec: CheckpointSpec, pixels: int | None, budget: Budget, where: str) -> None:
    """Before loading: raise :class:`~.memory_plan.MemoryPlanError` (naming what would fit) when one
    critique with ``spec`` needs more than ``budget()`` bytes on ``where``; log the plan either way."""
    planned = plan(spec, pixels)
    if planned is None:
        return
    shape, current = planned
    available = budget()
    log.info("RationalRewards memory plan (%s on %s): %s; %s available (free + evictable)%s", Path(spec.path).name,
             where, current.describe(), memory_plan.gib(available), "".join(f"; {n}" for n in current.notes))
    memory_plan.check(shape, current, available, where, spec.attention)


def build_critic(spec: CriticSpec, *, progress: DownloadProgress | None = None, budget: Budget | None = None,
                 where: str = "the device") -> Critic:
    """A ready critic for ``spec``: the checkpoint found (and, with ``budget``, checked to fit before any
    weight is read) and loaded, or the server reached; templates checked; ``max_pixels`` resolved."""
    if isinstance(spec, ServerSpec):
        return _server_critic(spec)
    from ..backends.transformers_backend import TransformersBackend

    spec = resolve(spec, progress)
    path = Path(spec.path)
    check_checkpoint(path, spec.name)   # a cut-off download or corrupt file: named, with the fix
    folders = [str(path / "templates"), *spec.template_dirs]
    check_templates(folders)
    pixels, why = resolve_max_pixels(spec.max_pixels, spec.name, path)   # once, for the plan and the critic
    if budget is not None:
        check_fits(spec, pixels, budget, where)
    backend = TransformersBackend.load(path, dtype=spec.dtype, device=spec.device, attention=spec.attention,
                                       batch_size=spec.batch_size, decoding=spec.decoding, adapter=spec.adapter,
                                       quantization=spec.quantization)
    return Critic(backend=backend, max_pixels=pixels, max_pixels_source=why, name=spec.name, template_dir=folders)


def _server_critic(spec: ServerSpec) -> Critic:
    from ..backends.openai_server import OpenAIServerBackend

    check_templates(list(spec.template_dirs))
    backend = OpenAIServerBackend(spec.url, spec.model, api_key_env=spec.api_key_env,
                                  max_concurrency=spec.max_concurrency, timeout_s=spec.timeout_s,
                                  retries=spec.retries, sleep_between_runs=spec.sleep_between_runs)
    if spec.check:
        backend.check()
    pixels, why = resolve_max_pixels(spec.max_pixels, backend.model)   # -1: the served model's training size
    return Critic(backend=backend, max_pixels=pixels, max_pixels_source=why, name=spec.label or backend.model,
                  template_dir=list(spec.template_dirs))


def server_critics(urls: str | Sequence[str], **options) -> list[Critic]:
    """One critic per base URL (several replicas of one served model); ``options`` as :class:`ServerSpec`."""
    urls = [urls] if isinstance(urls, str) else list(urls)
    if not urls:
        raise ValueError("no server URL given")
    return [build_critic(ServerSpec(url, **options)) for url in urls]


__all__ = ["Budget", "CheckpointSpec", "CriticSpec", "ServerSpec", "build_critic", "check_fits", "plan", "resolve",
           "server_critics"]
