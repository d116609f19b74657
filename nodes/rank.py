"""Rank a batch of candidates (best-of-N) by overall score."""
from __future__ import annotations

import json

import torch
from comfy_api.latest import io, ui

from ..models.cards import rank_card
from ..models.critic import rank, rank_rows, rank_table
from .common import (CATEGORY, check_critic, CriticType, CritiqueSet, CritiqueType, generating, generation_inputs,
                     options_from, to_pil_list, user_errors, weights_input)

NODE = "RR Rank"


class Rank(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="RR_Rank",
            display_name="Rank Images (RationalRewards)",
            category=CATEGORY,
            description="Critiques every image of a batch against the prompt and sorts the batch by overall "
                        "score, best first. Unreadable critiques go last; ties keep the input order.",
            is_output_node=True,
            inputs=[
                CriticType.Input("critic"),
                io.Image.Input("images", tooltip="A batch of candidates for the same prompt"),
                io.String.Input("prompt", multiline=True, default="",
                                tooltip="The prompt every candidate was generated from"),
                weights_input(),
                *generation_inputs(),
            ],
            outputs=[
                io.Image.Output(display_name="ranked", tooltip="The batch sorted best first"),
                io.Image.Output(display_name="best"),
                io.Int.Output(display_name="best_index", tooltip="Index of the best image in the input batch"),
                io.String.Output(display_name="table", tooltip="Rank, index, overall and per-dimension scores"),
                io.String.Output(display_name="table_json"),
                CritiqueType.Output(display_name="critique_data",
                                    tooltip="Critiques in ranked order (best first)"),
            ],
        )

    @classmethod
    def execute(cls, critic, images, prompt: str, weights: str, max_new_tokens: int, temperature: float,
                seed: int) -> io.NodeOutput:
        handle = check_critic(critic, NODE)
        with user_errors(NODE):
            pils = to_pil_list(images, NODE, "images")
            options = options_from(max_new_tokens, temperature, seed)
            with generating(handle, options, len(pils), images) as hooks:
                crits = handle.critic.critique(pils, prompt, options, **hooks)
        ranked = rank(crits, weights)
        order = torch.tensor([r.index for r in ranked], dtype=torch.long)
        batch = images if images.ndim == 4 else images.unsqueeze(0)
        sorted_images = batch.index_select(0, order.to(batch.device))
        rows = rank_rows(ranked)
        data = CritiqueSet([r.critique for r in ranked], [prompt] * len(ranked), weights, images=sorted_images)
        preview = ui.PreviewImage(sorted_images, cls=cls).as_dict()
        return io.NodeOutput(sorted_images, sorted_images[:1], ranked[0].index, rank_table(ranked), json.dumps(rows),
                             data, ui=preview | rank_card(ranked, rows, prompt, weights))
