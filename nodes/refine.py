"""Refine prompt: the critic's refined request, as is or merged with the user's fixed parts."""
from __future__ import annotations

from comfy_api.latest import io

from ..models.judging.ranking import rank
from ..models.judging.refine import MODES, refine
from .common import CATEGORY, CritiqueType, naming, require_critiques

NODE = "Refine Prompt"


def mode_input() -> io.Combo.Input:
    return io.Combo.Input("mode", display_name="next prompt", options=list(MODES), default="merge",
                          tooltip="refined: the critic's refined request as written. merge: the refined request "
                                  "plus every protected part of your prompt it dropped — LoRA tags <lora:..>, "
                                  "embeddings (embedding:name), weights (word:1.2) — and the keep list.")


def keep_input() -> io.String.Input:
    return io.String.Input("keep", display_name="always keep", default="", tooltip="Comma-separated phrases that must survive refinement "
                                                       "verbatim (trigger words, style tags).")


class RefinePrompt(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="RR_RefinePrompt",
            **naming("Refine Prompt", "prompt enhancer", "rewrite prompt", "better prompt",
                     shown=("improve",)),
            category=CATEGORY,
            description="The next prompt from a critique. Without a refined request in the critique, the "
                        "original prompt comes back and 'note' says why.",
            inputs=[
                CritiqueType.Input("critique_data", display_name="critique", tooltip="critique_data from a Critique node"),
                mode_input(),
                keep_input(),
                io.String.Input("original_prompt", display_name="your prompt", multiline=True, default="", optional=True,
                                tooltip="The prompt to protect; empty uses the prompt the critique judged"),
                io.Combo.Input("pick", display_name="from which image", options=["best", "first"], default="best",
                               tooltip="Which critique of a batch to refine from: the best-scored or the first"),
            ],
            outputs=[
                io.String.Output(display_name="prompt"),
                io.String.Output(display_name="note", tooltip="Where the prompt came from and what was restored"),
                io.Boolean.Output(display_name="changed", tooltip="False when the original came back unchanged"),
            ],
        )

    @classmethod
    def execute(cls, critique_data, mode: str, keep: str, pick: str, original_prompt: str = "") -> io.NodeOutput:
        require_critiques(critique_data, NODE)
        idx = rank(critique_data.critiques, critique_data.weights)[0].index if pick == "best" else 0
        original = (original_prompt or "").strip() or critique_data.prompts[idx]
        result = refine(critique_data.critiques[idx], original, mode, keep)
        return io.NodeOutput(result.prompt, result.note, result.prompt.strip() != original.strip())
