"""Rank a batch of candidates (best-of-N) by overall score."""
from __future__ import annotations

import json
import math

import torch
from comfy_api.latest import io, ui

from ..models.critic import rank
from ..models.rubric import dimensions_for, Task
from .common import (CATEGORY, check_critic, CriticType, CritiqueSet, CritiqueType, fmt, generating, generation_inputs,
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
        dims = dimensions_for(Task.T2I)
        rows = [{"rank": pos + 1, "index": r.index, "overall": None if math.isnan(r.overall) else r.overall,
                 "scores": {d.key: r.critique.dimensions[d.key].to_dict()["score"] for d in dims},
                 "warnings": len(r.critique.warnings)} for pos, r in enumerate(ranked)]
        header = "rank | index | overall | " + " | ".join(d.title for d in dims)
        lines = [header] + [f"{row['rank']} | {r.index} | {fmt(r.overall)} | "
                            + " | ".join(fmt(r.critique.score(d.key)) for d in dims)
                            for row, r in zip(rows, ranked)]
        data = CritiqueSet([r.critique for r in ranked], [prompt] * len(ranked), weights, images=sorted_images)
        table_json = json.dumps(rows)
        card = {"rr_rank": [{"prompt": prompt, "rows": rows,
                             "critiques": [r.critique.to_dict(weights) | {"raw": None} for r in ranked]}]}
        preview = ui.PreviewImage(sorted_images, cls=cls).as_dict()
        return io.NodeOutput(sorted_images, sorted_images[:1], ranked[0].index, "\n".join(lines), table_json,
                             data, ui=preview | card)
