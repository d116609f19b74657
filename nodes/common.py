"""What every RationalRewards node shares: custom types, tensor<->PIL, progress/interrupt, errors."""
from __future__ import annotations

import dataclasses
import logging
import os
import time
import weakref
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

import torch
from PIL import Image

import comfy.model_management
import comfy.utils
import folder_paths
from comfy_api.latest import io

from ..models import Critique
from ..models.backends.base import GenerationInterrupted, GenerationOptions
from ..models.errors import RationalRewardsError
from ..models.critic.critic import Critic
from ..models.critic.images import from_unit_floats
from ..models.judging.rubric import WEIGHT_PRESETS
from ..models.judging.rules import DECISION_HELP, DEFAULT_DECISION, DecisionRule
from . import residency

log = logging.getLogger("RationalRewards")
CATEGORY = "RationalRewards"
MODEL_FOLDER = "rationalrewards"
TEMPLATE_FOLDER = "rationalrewards_templates"   # user prompt templates, read before the pack's own

PACK_SUFFIX = "(RationalRewards)"
# ComfyUI >= 0.10 sends a node's search words to the frontend (Schema.search_aliases); older ones cannot.
HAS_SEARCH_ALIASES = "search_aliases" in {f.name for f in dataclasses.fields(io.Schema)}


def naming(title: str, *aliases: str, shown: tuple[str, ...] = ()) -> dict:
    """A node's display name, ``"<title> (RationalRewards)"`` for every node, and the words an artist
    searches for it. Where this ComfyUI sends search aliases, all words go there; where it cannot, the
    frontend searches only the name, so the ``shown`` words join it: ``"Rank Images · best of N, score
    (RationalRewards)"``. That search (Fuse, threshold 0.3) penalises a match by its distance from the
    start, so a shown word must begin within the name's first 30 characters (a unit test checks).
    Messages name a node by its ``title``, the part every version shows."""
    if HAS_SEARCH_ALIASES:
        return {"display_name": f"{title} {PACK_SUFFIX}", "search_aliases": [*shown, *aliases]}
    words = f" · {', '.join(shown)}" if shown else ""
    return {"display_name": f"{title}{words} {PACK_SUFFIX}"}


CriticType = io.Custom("RR_CRITIC")
CRITIC_TOOLTIP = "The critic: from Load Critic (or Connect to Critic Server)"
CritiqueType = io.Custom("RR_CRITIQUE")


def register_model_folder() -> None:
    """``models/rationalrewards`` is where critic checkpoints live (extra_model_paths.yaml may add more)."""
    if MODEL_FOLDER not in folder_paths.folder_names_and_paths:
        folder_paths.add_model_folder_path(MODEL_FOLDER, os.path.join(folder_paths.models_dir, MODEL_FOLDER),
                                           is_default=True)


def model_dirs() -> list[str]:
    register_model_folder()
    return folder_paths.get_folder_paths(MODEL_FOLDER)


def template_dirs() -> list[str]:
    """User template folders: ``models/rationalrewards/templates/`` (``extra_model_paths.yaml`` may add more
    under ``rationalrewards_templates``). A template there overrides the pack's file of the same name."""
    if TEMPLATE_FOLDER not in folder_paths.folder_names_and_paths:
        folder_paths.add_model_folder_path(TEMPLATE_FOLDER,
                                           os.path.join(folder_paths.models_dir, MODEL_FOLDER, "templates"),
                                           is_default=True)
    return folder_paths.get_folder_paths(TEMPLATE_FOLDER)


@dataclass
class CritiqueSet:
    """What flows on an RR_CRITIQUE link: the parsed critiques of a batch and what they judged."""
    critiques: list[Critique]
    prompts: list[str]
    weights: str = "equal"
    images: torch.Tensor | None = None      # the judged images [B,H,W,C], for localisation
    sources: torch.Tensor | None = None     # edit sources, when the task was Edit
    extra: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.critiques)


class NodeError(RationalRewardsError, ValueError):
    """A problem the user can fix; the message starts with the node's name."""


def fail(node: str, message: str) -> NodeError:
    return NodeError(f"{node}: {message}")


def require_critiques(data: object, node: str, connect: str = "a Critique node") -> CritiqueSet:
    """The critique batch on an RR_CRITIQUE input, or an error saying what to connect instead."""
    if isinstance(data, CritiqueSet) and data.critiques:
        return data
    if isinstance(data, CritiqueSet) and "tournament" in data.extra:
        raise fail(node, "critique_data comes from Rank Images in pairwise mode, which compares images and writes "
                         "no critique of each one; set Rank's mode to pointwise, or critique Rank's 'best' output "
                         "with a Critique node")
    raise fail(node, f"critique_data is empty; connect the critique_data output of {connect}")


@contextmanager
def user_errors(node: str) -> Iterator[None]:
    """Turn the core's input errors into messages that name the node; let interrupts through."""
    try:
        yield
    except GenerationInterrupted:
        comfy.model_management.throw_exception_if_processing_interrupted()
        raise
    except RationalRewardsError as e:
        raise fail(node, str(e)) from None


def image_batch(images: torch.Tensor, node: str, what: str = "image") -> torch.Tensor:
    """A ComfyUI IMAGE checked for the critic: a batch [B,H,W,C] (a single [H,W,C] gets a batch axis)."""
    if not isinstance(images, torch.Tensor):
        raise fail(node, f"{what} is not an IMAGE tensor")
    if images.ndim == 3:
        images = images.unsqueeze(0)
    if images.ndim != 4 or images.shape[0] == 0:
        raise fail(node, f"{what} must be an IMAGE batch [B,H,W,C]; got shape {tuple(images.shape)}")
    channels = images.shape[-1]
    if channels not in (1, 3, 4):
        raise fail(node, f"{what} has {channels} channels; expected RGB (3), RGBA (4) or greyscale (1)")
    return images.detach()


def critic_images(images: torch.Tensor, node: str, what: str = "image") -> list[torch.Tensor]:
    """A ComfyUI IMAGE batch as the critic takes it: one [H,W,C] tensor per image (no PIL round trip)."""
    return list(image_batch(images, node, what))


def to_pil_list(images: torch.Tensor, node: str, what: str = "image") -> list[Image.Image]:
    """A ComfyUI IMAGE batch [B,H,W,C] (C = 1, 3 or 4) as PIL images (the core's one conversion)."""
    return from_unit_floats(image_batch(images, node, what))


def generation_inputs() -> list:
    return [
        io.Int.Input("max_new_tokens", display_name="max answer length (tokens)", default=2048, min=16, max=8192,
                     step=16,
                     tooltip="The longest critique the critic may write, in tokens (default 2048, the authors' "
                             "setting). Most critiques end well before it; lower is faster but may cut the critique "
                             "before the refined prompt."),
        io.Float.Input("temperature", display_name="randomness (temperature)", default=0.1, min=0.0, max=2.0,
                       step=0.05,
                       tooltip="How freely the critic picks its words: 0 always gives the same critique, 0.1 (the "
                               "default) is the authors' setting."),
        io.Int.Input("seed", display_name="critique seed", default=0, min=0, max=0xFFFFFFFF,
                     control_after_generate=False,
                     tooltip="Seed of the critic's sampling, not of your generator: the same seed reproduces the same "
                             "critique. Uses its own random generator, never ComfyUI's."),
    ]


def weights_input() -> io.Combo.Input:
    return io.Combo.Input("weights", display_name="overall score from", options=list(WEIGHT_PRESETS),
                          default="equal",
                          tooltip="How the per-dimension scores combine into the 0-1 overall score (nothing to do "
                                  "with LoRA weights). equal: the mean of every dimension that applies (the published "
                                  "reward). rl_edit: the same without Image Faithfulness, as the authors' editing RL "
                                  "training did.")


def decision_input(when: str = "") -> io.Combo.Input:
    """How a comparison picks its winner (``rules.decide``): the same rule names on Compare and Rank."""
    return io.Combo.Input("decision", display_name="winner rule", options=[r.value for r in DecisionRule],
                          default=DEFAULT_DECISION.value, optional=True,
                          tooltip=when + " ".join(DECISION_HELP[r] + "." for r in DecisionRule))


def check_decision(decision: str, node: str) -> str:
    if decision not in [r.value for r in DecisionRule]:
        raise fail(node, f"decision must be one of {[r.value for r in DecisionRule]}, not {decision!r}")
    return decision


def options_from(max_new_tokens: int, temperature: float, seed: int) -> GenerationOptions:
    return GenerationOptions(max_new_tokens=max_new_tokens, temperature=temperature, seed=seed)


class TokenProgress:
    """ComfyUI progress bar over the token budget of every critique in a call (the fallback when a
    critic cannot follow its answer's sections, e.g. a follow-up with no answer skeleton)."""

    def __init__(self, generations: int, budget: int, bar: comfy.utils.ProgressBar | None = None):
        self.budget = budget
        self.bar = bar or comfy.utils.ProgressBar(max(1, generations * budget))
        self.scale = self.bar.total / max(1, generations * budget)
        self.offset = 0
        self.last = 0
        self.follows_answer = False   # set once the answer itself reports: tokens no longer move the bar

    def __call__(self, done: int, budget: int) -> None:
        if done < self.last:          # a new batch started
            self.offset += self.budget
        self.last = done
        if not self.follows_answer:
            self.bar.update_absolute(min(int((self.offset + done) * self.scale), self.bar.total))


class AnswerBar:
    """The node's progress bar, by how much of the answers is written: it ends when the answers end,
    not when the 2048-token budget would (a critique is usually far shorter)."""

    STEPS = 1000

    def __init__(self, generations: int, budget: int, node: str):
        self.bar = comfy.utils.ProgressBar(self.STEPS)
        self.tokens = TokenProgress(generations, budget, self.bar)
        self.node, self.generations = node, generations
        self.started = False

    def answer(self, fraction: float) -> None:
        if not self.started:
            self.started = True
            status(self.node, f"writing the critique ({self.generations} answer(s))")
        self.tokens.follows_answer = True
        self.bar.update_absolute(min(self.STEPS, int(round(fraction * self.STEPS))))

    def end(self) -> None:
        self.bar.update_absolute(self.STEPS)


def _node_id() -> str | None:
    """The executing node's id, from ComfyUI's execution context (None outside a run)."""
    try:
        from comfy_execution.utils import get_executing_context
    except ImportError:        # older ComfyUI: the status goes to the log only
        return None
    context = get_executing_context()
    return None if context is None else str(context.node_id)


def status(node: str, text: str) -> None:
    """A line the artist can read while a node works: on the node in the canvas (ComfyUI's progress
    text, where this ComfyUI has it) and in the log."""
    log.info("%s: %s", node, text)
    node_id = _node_id()
    try:
        from server import PromptServer
    except ImportError:
        return
    server = getattr(PromptServer, "instance", None)
    send = getattr(server, "send_progress_text", None)
    if send is not None and node_id is not None:
        try:
            send(f"{node}: {text}", node_id)
        except Exception as e:          # a status must never fail the critique
            log.debug("progress text not sent: %s", e)


_seen_shapes: "weakref.WeakKeyDictionary[object, set[int]]" = weakref.WeakKeyDictionary()


def _first_run_note(critic: Critic, items: int) -> str:
    """What the first critique of a session (or a new batch size) costs before any answer appears."""
    backend = critic.backend
    mode = backend.decoding_mode()
    if mode == "server":
        return ""
    batch = max(1, min(items, backend.batch_size))
    seen = _seen_shapes.setdefault(backend, set())
    first = batch not in seen
    seen.add(batch)
    if first and mode in ("compiled", "static"):
        return (f"; compiling decoding for {batch} image(s) at once (first time this session: a minute or more; "
                "'plain' decoding on the loader skips it)")
    if first and not seen - {batch}:
        return "; warming up (first critique of this critic)"
    return ""


@contextmanager
def generating(handle: residency.CriticHandle, options: GenerationOptions, items: int,
               *images: torch.Tensor | None, node: str = "Critique") -> Iterator[dict]:
    """``with generating(handle, options, n, image[, image2]) as hooks: handle.critic.critique(..., **hooks)``.

    Around a node's generation: ComfyUI's memory manager puts the critic on its device (evicting what
    it must) and takes it back afterwards unless 'keep_loaded'; ``hooks`` are the progress bar (by
    the answers' sections, with the token budget as fallback; it ends when the answers end) and
    ComfyUI's interrupt check. The node shows a status line for each step, also in the log.
    ``images`` are the IMAGE inputs one item combines (they size the KV-cache headroom).
    """
    pixels = sum(int(t.shape[-3]) * int(t.shape[-2]) for t in images if isinstance(t, torch.Tensor))
    critic = handle.critic
    batch = max(1, critic.backend.batch_size)
    bar = AnswerBar(-(-items // batch), options.max_new_tokens, node)
    started = time.monotonic()
    if handle.residency is not None:
        status(node, "putting the critic on its device (ComfyUI makes room if it must)")
    with residency.resident(handle, options, items, pixels):
        status(node, f"critiquing {items} item(s){_first_run_note(critic, items)}")
        yield {"progress": bar.tokens, "should_stop": comfy.model_management.processing_interrupted,
               "answer_progress": bar.answer}
    bar.end()
    status(node, f"done: {items} item(s) in {time.monotonic() - started:.1f} s")


def check_critic(critic: object, node: str) -> residency.CriticHandle:
    """The RR_CRITIC input as a handle (a bare core ``Critic`` has no residency)."""
    if isinstance(critic, Critic):
        return residency.CriticHandle(critic)
    if not isinstance(critic, residency.CriticHandle):
        raise fail(node, "the critic input is not a critic; connect the critic output of Load Critic (or Connect to "
                         "Critic Server)")
    return critic
