"""Compare two candidates: winner, per-dimension winners and scores, rationale."""
from __future__ import annotations

import json

from comfy_api.latest import io, ui

from ..models.judging.cards import compare_card, compare_data
from ..models.judging.critique import Winner
from ..models.judging.rules import DEFAULT_DECISION
from .common import (CATEGORY, CRITIC_TOOLTIP, check_critic, check_decision, CriticType, decision_input, fail, generating,
                     generation_inputs, naming, options_from, critic_images, user_errors)

NODE = "Compare Two Images"


class Compare(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="RR_Compare",
            **naming("Compare Two Images", "which is better", "A/B test", "preference", "pick best", "score",
                     shown=("judge",)),
            category=CATEGORY,
            description="Judges image A against image B in one pairwise critique. The winner is decided by the "
                        "'decision' rule: sum each image's dimension scores; higher wins, equal is a tie. Connect "
                        "'source' to compare two edits of the same source image.",
            is_output_node=True,
            inputs=[
                CriticType.Input("critic", tooltip=CRITIC_TOOLTIP),
                io.Image.Input("image_a", display_name="image A", tooltip="The first candidate"),
                io.Image.Input("image_b", display_name="image B", tooltip="The second candidate"),
                io.String.Input("prompt", multiline=True, default="",
                                tooltip="The prompt (or editing instruction) both images answer"),
                io.Image.Input("source", display_name="before (source, for edits)", optional=True,
                               tooltip="Optional: the image before editing. Connected, A and B are judged as two "
                                       "edits of it (the Edit rubric, with Image Faithfulness)"),
                decision_input(),
                *generation_inputs(),
            ],
            outputs=[
                io.String.Output(display_name="winner",
                                 tooltip="A, B or tie; undecided only under the strict rule when a score was unreadable"),
                io.Image.Output(display_name="winner_image",
                                tooltip="The winning image; image A on a tie or when undecided"),
                io.Float.Output(display_name="total_a",
                                tooltip="Sum of A's dimension scores under the decision rule (NaN: strict and unreadable)"),
                io.Float.Output(display_name="total_b",
                                tooltip="Sum of B's dimension scores under the decision rule (NaN: strict and unreadable)"),
                io.String.Output(display_name="rationale"),
                io.String.Output(display_name="dimensions_json",
                                 tooltip="Per-dimension scores, winners and justifications as JSON"),
            ],
        )

    @classmethod
    def execute(cls, critic, image_a, image_b, prompt: str, max_new_tokens: int, temperature: float, seed: int,
                source=None, decision: str = DEFAULT_DECISION.value) -> io.NodeOutput:
        handle = check_critic(critic, NODE)
        with user_errors(NODE):
            a = critic_images(image_a, NODE, "image_a")
            b = critic_images(image_b, NODE, "image_b")
            src = critic_images(source, NODE, "source") if source is not None else None
            if len(a) != 1 or len(b) != 1 or (src is not None and len(src) != 1):
                raise fail(NODE, "compare takes single images (batch of 1 each); use 'Rank Images' for batches")
            check_decision(decision, NODE)
            options = options_from(max_new_tokens, temperature, seed)
            with generating(handle, options, 1, image_a, image_b, source, node=NODE) as hooks:
                result = handle.critic.compare(a[0], b[0], prompt, options, source=src[0] if src else None,
                                               **hooks)
        verdict = result.decide(decision)
        winner, total_a, total_b = verdict.winner, verdict.total_a, verdict.total_b
        winner_image = image_b[:1] if winner is Winner.B else image_a[:1]
        # thumbnails for the card: A then B (saved separately: the two may differ in size)
        previews = [ref for img in (image_a[:1], image_b[:1]) for ref in ui.PreviewImage(img, cls=cls).as_dict()["images"]]
        return io.NodeOutput(winner.value, winner_image, total_a, total_b, result.report(decision),
                             json.dumps(compare_data(result, prompt, decision), ensure_ascii=False),
                             ui=compare_card(result, prompt, decision) | {"images": previews})
