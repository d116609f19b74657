"""Rank a batch of candidates (best-of-N) by overall score."""
from __future__ import annotations

import json

import torch
from comfy_api.latest import io, ui

from ..models.judging.cards import rank_card, tournament_card
from ..models.judging.ranking import rank, rank_rows, rank_table, tournament_rows, tournament_table
from ..models.judging.rubric import Task
from ..models.judging.rules import DEFAULT_DECISION
from ..models.critic.tournament import max_comparisons, pairwise_rank
from .common import (CATEGORY, CRITIC_TOOLTIP, check_critic, check_decision, CriticType, CritiqueSet, CritiqueType,
                     decision_input, fail, generating, generation_inputs, naming, options_from, critic_images,
                     user_errors, weights_input)

NODE = "Rank Images"


class Rank(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="RR_Rank",
            **naming("Rank Images", "pick best", "select best", "sort by score", "quality",
                     shown=("best of N", "score")),
            category=CATEGORY,
            description="Critiques every image of a batch against the prompt and sorts the batch by overall "
                        "score, best first (best-of-N). Connect 'source' to rank edits of one image. Unreadable "
                        "critiques go last; ties keep the input order. Mode "
                        "pairwise ranks by comparing images instead (a merge tournament, Bradley-Terry scores).",
            is_output_node=True,
            inputs=[
                CriticType.Input("critic", tooltip=CRITIC_TOOLTIP),
                io.Image.Input("images", display_name="candidates",
                               tooltip="A batch of candidates for the same prompt (or edits of the same source)"),
                io.String.Input("prompt", multiline=True, default="",
                                tooltip="The prompt (or editing instruction) every candidate was made from"),
                io.Image.Input("source", display_name="before (source, for edits)", optional=True,
                               tooltip="Optional: the image before editing. Connected, the candidates are judged as "
                                       "edits of it (the Edit rubric, with Image Faithfulness): best-of-N for edits. "
                                       "One source for all candidates, or one per candidate."),
                weights_input(),
                *generation_inputs(),
                io.Combo.Input("mode", display_name="rank by", options=["pointwise", "pairwise"], default="pointwise",
                               optional=True,
                               tooltip="pointwise: critique each image alone and sort by overall score. pairwise: compare "
                                       "images two at a time in a merge tournament (at most N*log2(N) comparisons; "
                                       "the critic is strongest at comparing) and sort by the bracket; each image "
                                       "gets a Bradley-Terry score. The seed also shuffles the bracket."),
                io.Boolean.Input("both_orders", display_name="judge both orders (A/B and B/A)", default=False,
                                 optional=True,
                                 tooltip="pairwise mode: judge every pair as A/B and as B/A and average the two "
                                         "verdicts (cancels position bias; twice the comparisons)"),
                decision_input("pairwise mode: how each comparison picks its winner (as in Compare Images). "),
            ],
            outputs=[
                io.Image.Output(display_name="ranked", tooltip="The batch sorted best first"),
                io.Image.Output(display_name="best"),
                io.Int.Output(display_name="best_index", tooltip="Index of the best image in the input batch"),
                io.String.Output(display_name="table", tooltip="Rank, index, overall and per-dimension scores"),
                io.String.Output(display_name="table_json"),
                CritiqueType.Output(display_name="critique_data",
                                    tooltip="Critiques in ranked order (best first). Pairwise mode compares and "
                                            "writes no critique of each image: critique 'best' to refine it"),
            ],
        )

    @classmethod
    def execute(cls, critic, images, prompt: str, weights: str, max_new_tokens: int, temperature: float,
                seed: int, source=None, mode: str = "pointwise", both_orders: bool = False,
                decision: str = DEFAULT_DECISION.value) -> io.NodeOutput:
        handle = check_critic(critic, NODE)
        if mode == "pairwise":
            return cls._pairwise(handle, images, prompt, weights, options_from(max_new_tokens, temperature, seed),
                                 check_decision(decision, NODE), seed, both_orders, source)
        with user_errors(NODE):
            candidates = critic_images(images, NODE, "images")
            sources = None if source is None else critic_images(source, NODE, "source")   # one for all, or one each
            options = options_from(max_new_tokens, temperature, seed)
            with generating(handle, options, len(candidates), images, source, node=NODE) as hooks:
                crits = handle.critic.critique(candidates, prompt, options, sources=sources, **hooks)
        ranked = rank(crits, weights)
        order = torch.tensor([r.index for r in ranked], dtype=torch.long)
        batch = images if images.ndim == 4 else images.unsqueeze(0)
        sorted_images = batch.index_select(0, order.to(batch.device))
        task = Task.T2I if source is None else Task.EDIT
        rows = rank_rows(ranked, task)
        sources_out = None
        if source is not None:
            src = source if source.ndim == 4 else source.unsqueeze(0)
            sources_out = src if src.shape[0] == 1 else src.index_select(0, order.to(src.device))
        data = CritiqueSet([r.critique for r in ranked], [prompt] * len(ranked), weights, images=sorted_images,
                           sources=sources_out)
        preview = ui.PreviewImage(sorted_images, cls=cls).as_dict()
        return io.NodeOutput(sorted_images, sorted_images[:1], ranked[0].index, rank_table(ranked, task), json.dumps(rows),
                             data, ui=preview | rank_card(ranked, rows, prompt, weights))

    @classmethod
    def _pairwise(cls, handle, images, prompt: str, weights: str, options, decision: str, seed: int,
                  both_orders: bool, source=None) -> io.NodeOutput:
        with user_errors(NODE):
            candidates = critic_images(images, NODE, "images")
            sources = None if source is None else critic_images(source, NODE, "source")
            if sources is not None and len(sources) != 1:
                raise fail(NODE, f"pairwise mode compares edits of one source image; source has {len(sources)}")
            with generating(handle, options, max_comparisons(len(candidates), both_orders), images, images, source,
                            node=NODE) as hooks:
                result, _ = pairwise_rank(handle.critic, candidates, prompt, options, seed=seed, both_orders=both_orders,
                                          rule=decision,
                                          source=sources[0] if sources else None, **hooks)
        order = torch.tensor(result.order, dtype=torch.long)
        batch = images if images.ndim == 4 else images.unsqueeze(0)
        sorted_images = batch.index_select(0, order.to(batch.device))
        rows = tournament_rows(result)
        table_json = json.dumps({"rows": rows, "comparisons": result.comparisons, "seed": seed,
                                 "both_orders": both_orders, "decision": decision})
        data = CritiqueSet([], [], weights, images=sorted_images,
                           extra={"tournament": result.to_dict()})
        preview = ui.PreviewImage(sorted_images, cls=cls).as_dict()
        return io.NodeOutput(sorted_images, sorted_images[:1], result.order[0], tournament_table(rows), table_json,
                             data, ui=preview | tournament_card(rows, prompt, result.comparisons))
