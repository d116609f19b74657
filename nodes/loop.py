"""Generate-Critique-Refine loop around any generator, by ComfyUI node expansion.

Wire: Loop Start (prompt, seed) → your text encoder / sampler / decoder → Critique →
Loop End. When Loop End decides to go on, it clones every node between Start and End
(GraphBuilder) with the refined prompt fed into the Start clone; nodes outside the body
(model loaders, negative prompt, source image) are shared and run once.
"""
from __future__ import annotations

import torch
import comfy.model_management
import comfy.utils
from comfy_api.latest import io, ui
from comfy_execution.graph_utils import GraphBuilder, is_link

from ..models.judging.cards import loop_card
from ..models.judging.loop import SEED_POLICIES, LoopState, StopRule, parse_stop_dimensions, stop_dimension_names
from ..models.judging.rubric import ALL_DIMENSIONS
from .common import CATEGORY, CritiqueSet, CritiqueType, fail, naming, require_critiques, weights_input
from .refine import keep_input, mode_input

LoopType = io.Custom("RR_LOOP")
LoopStateType = io.Custom("RR_LOOP_STATE")
START, END = "Refine Loop Start", "Refine Loop End"


class RefineLoopStart(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="RR_RefineLoopStart",
            **naming(START, "improve prompt", "prompt loop", "iterate", "regenerate", shown=("improve prompt",)),
            category=CATEGORY + "/loop",
            description="Opens a Generate-Critique-Refine loop. Feed 'prompt' into your positive text encoder "
                        "(or edit instruction) and 'seed' into your sampler; close the loop with Refine Loop End.",
            inputs=[
                io.String.Input("prompt", multiline=True, default="",
                                tooltip="Your prompt (or edit instruction) for the first round"),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True,
                             tooltip="Seed of the first round; 'next round's seed' on Loop End decides later rounds"),
                LoopStateType.Input("state", optional=True, tooltip="Set by Refine Loop End; leave unconnected"),
            ],
            outputs=[
                LoopType.Output(display_name="loop", tooltip="Connect to Refine Loop End"),
                io.String.Output(display_name="prompt", tooltip="This round's prompt"),
                io.Int.Output(display_name="seed", tooltip="This round's seed"),
                io.Int.Output(display_name="round", tooltip="0 for the first round"),
            ],
        )

    @classmethod
    def execute(cls, prompt: str, seed: int, state: LoopState | None = None) -> io.NodeOutput:
        if state is None:
            try:
                state = LoopState.start(prompt, seed)
            except ValueError as e:
                raise fail(START, str(e)) from None
        return io.NodeOutput(state, state.prompt, state.seed, state.round)


def loop_body(dynprompt, open_id: str, close_id: str) -> list[str]:
    """Node ids downstream of the loop start and upstream of the loop end (both included)."""
    upstream: dict[str, list[str]] = {}

    def explore(node_id: str) -> None:
        for value in dynprompt.get_node(node_id).get("inputs", {}).values():
            if is_link(value):
                parent = value[0]
                if parent not in upstream:
                    upstream[parent] = []
                    explore(parent)
                upstream[parent].append(node_id)

    explore(close_id)
    contained = {open_id: True}
    stack = [open_id]
    while stack:
        for child in upstream.get(stack.pop(), []):
            if child not in contained:
                contained[child] = True
                stack.append(child)
    contained[close_id] = True
    return list(contained)


def expand_next_round(dynprompt, unique_id: str, open_id: str, state: object) -> tuple[GraphBuilder, object]:
    """The loop body cloned for the next round (the open node's clone gets ``state``), and the close node's clone."""
    graph = GraphBuilder()
    body = loop_body(dynprompt, open_id, unique_id)
    local = {nid: ("Recurse" if nid == unique_id else dynprompt.get_display_node_id(nid)) for nid in body}
    for nid in body:
        node = graph.node(dynprompt.get_node(nid)["class_type"], local[nid])
        node.set_override_display_id(dynprompt.get_display_node_id(nid))
    for nid in body:
        clone = graph.lookup_node(local[nid])
        for key, value in dynprompt.get_node(nid)["inputs"].items():
            if is_link(value) and value[0] in local:
                clone.set_input(key, graph.lookup_node(local[value[0]]).out(value[1]))
            else:
                clone.set_input(key, value)
    graph.lookup_node(local[open_id]).set_input("state", state)
    return graph, graph.lookup_node("Recurse")


def stack_images(images: list[torch.Tensor]) -> torch.Tensor:
    """One batch of every round's images (resized to the first round's size when they differ)."""
    h, w = images[0].shape[1:3]
    same = [im if im.shape[1:3] == (h, w) else
            comfy.utils.common_upscale(im.movedim(-1, 1), w, h, "bilinear", "center").movedim(1, -1)
            for im in images]
    return torch.cat(same, dim=0)


def check_stop_dimensions(stop_dimensions: str | None, node: str) -> bool | str:
    """A loop end's queue-time check of the typed stop dimensions (a linked value is checked when it runs)."""
    if isinstance(stop_dimensions, str):
        try:
            parse_stop_dimensions(stop_dimensions)
        except ValueError as e:
            return f"{node}: 'good enough when these': {e}"
    return True


def end_outputs() -> list:
    """Loop End's outputs: the one declaration its schema, its expansion and :func:`_end_outputs` follow."""
    return [
        io.Image.Output(display_name="best_image"),
        io.String.Output(display_name="best_prompt"),
        io.Image.Output(display_name="all_rounds", tooltip="Every round's images, in order"),
        io.String.Output(display_name="history_json",
                         tooltip="Rounds with prompt, seed, scores, chosen best and stop reason"),
        io.String.Output(display_name="history", tooltip="The same history, readable"),
        io.Int.Output(display_name="best_round", tooltip="-1 when no round could be scored"),
        CritiqueType.Output(display_name="best_critique"),
    ]


def _end_outputs(state: LoopState, weights: str) -> tuple:
    """Loop End's outputs, in :func:`end_outputs` order, from a finished loop's state."""
    best, history = state.result_round, state.history
    prompt = history.rounds[best].prompt
    critique = CritiqueSet([state.critiques[best]], [prompt], weights, images=state.kept[best])
    return (state.kept[best], prompt, stack_images(list(state.batches)), history.to_json(), history.table(),
            -1 if state.best_round is None else best, critique)


class RefineLoopEnd(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="RR_RefineLoopEnd",
            **naming(END, "improve prompt", "prompt loop", "keep best", shown=("improve prompt",)),
            category=CATEGORY + "/loop",
            description="Closes a Generate-Critique-Refine loop: records the round, stops when the critique meets "
                        "the rule (published: Text Faithfulness and Physical Quality >= 3), when the score stops "
                        "improving or after max rounds; otherwise reruns the body with the refined prompt. "
                        "Returns the best round (not the last).",
            enable_expand=True,
            is_output_node=True,
            inputs=[
                LoopType.Input("loop", tooltip="From Refine Loop Start"),
                io.Image.Input("image", tooltip="This round's generated (or edited) image"),
                CritiqueType.Input("critique_data", display_name="critique",
                                   tooltip="critique_data from the Critique node that judges this round's image"),
                io.Int.Input("max_rounds", display_name="max rounds", default=3, min=1, max=20,
                             tooltip="Generations at most, the first included (the published loop is 2: one "
                                     "refinement)"),
                io.String.Input("stop_dimensions", display_name="good enough when these",
                                default=stop_dimension_names(),
                                tooltip="The scores that must all reach the threshold to stop, by the names on the "
                                        "critique card, comma-separated: "
                                        + ", ".join(d.title for d in ALL_DIMENSIONS)
                                        + ". Checked when you queue."),
                io.Float.Input("threshold", display_name="reach this score (1-4)", default=3.0, min=1.0, max=4.0,
                               step=0.25,
                               tooltip="The score (1-4) each of those must reach; 3.0 as published"),
                io.Boolean.Input("stop_when_no_improvement", display_name="stop when no better", default=True,
                                 tooltip="Stop when a round scores no better than the best before it"),
                io.Combo.Input("seed_policy", display_name="next round's seed", options=list(SEED_POLICIES),
                               default="same",
                               tooltip="same: rerun with the same seed (as published); increment: seed + 1"),
                mode_input(),
                keep_input(),
                weights_input(),
            ],
            outputs=end_outputs(),
            hidden=[io.Hidden.dynprompt, io.Hidden.unique_id],
        )

    @classmethod
    def validate_inputs(cls, stop_dimensions: str | None = None) -> bool | str:
        return check_stop_dimensions(stop_dimensions, END)

    @classmethod
    def execute(cls, loop, image, critique_data, max_rounds: int, stop_dimensions: str, threshold: float,
                stop_when_no_improvement: bool, seed_policy: str, mode: str, keep: str,
                weights: str) -> io.NodeOutput:
        if not isinstance(loop, LoopState):
            raise fail(END, "'loop' must come from a Refine Loop Start node")
        require_critiques(critique_data, END, "a Critique node that judges this loop's image")
        comfy.model_management.throw_exception_if_processing_interrupted()
        try:
            rule = StopRule(parse_stop_dimensions(stop_dimensions), threshold, max_rounds, stop_when_no_improvement)
        except ValueError as e:
            raise fail(END, str(e)) from None
        batch = image if image.ndim == 4 else image.unsqueeze(0)
        state = loop.record(critique_data.critiques, batch, rule, weights=weights, mode=mode, keep=keep,
                            seed_policy=seed_policy)
        # this round's images next to its card: in the history as soon as the round is recorded, so they stay
        # visible when a later round fails (a dead critic server, an interrupt)
        shown = ui.PreviewImage(batch, cls=cls).as_dict() | loop_card(state.history, state.critiques)
        if state.done:
            return io.NodeOutput(*_end_outputs(state, weights), ui=shown)
        hidden = cls.hidden
        open_id = hidden.dynprompt.get_node(hidden.unique_id)["inputs"]["loop"][0]
        graph, clone = expand_next_round(hidden.dynprompt, hidden.unique_id, open_id, state)
        return io.NodeOutput(*(clone.out(i) for i in range(len(end_outputs()))), expand=graph.finalize(), ui=shown)
