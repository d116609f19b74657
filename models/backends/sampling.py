"""Picking the next token from logits: the one sampling rule every in-process backend uses.

The transformers backend (as a logits processor) and ComfyUI's native runtime (in its own decoding loop)
both pick tokens here, so a seed, a temperature, top-k/top-p and the repetition penalty mean the same on
either: with the same logits they pick the same tokens. Each request samples from its own seeded
``torch.Generator``; the global RNG is never touched.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch


def penalize_repetition(scores: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """transformers' repetition penalty: the logit of every token in ``seen`` (the prompt and the answer so
    far, [rows, n] ids) is divided by ``penalty`` when positive, multiplied when negative."""
    if penalty == 1.0 or seen.numel() == 0:
        return scores
    picked = scores.gather(1, seen)
    picked = torch.where(picked < 0, picked * penalty, picked / penalty)
    return scores.scatter(1, seen, picked)


def sample(scores: torch.Tensor, temperature: float, top_p: float, top_k: int,
           generators: Sequence[torch.Generator]) -> torch.Tensor:
    """One token id per row ([rows, 1]) of ``scores`` ([rows, vocab]): top-k, then temperature, then top-p
    (nucleus), drawn from each row's own generator."""
    scores = scores.float()
    if 0 < top_k < scores.shape[-1]:
        kth = scores.topk(top_k, dim=-1).values[..., -1:]
        scores = scores.masked_fill(scores < kth, -math.inf)
    # shift first: a tiny temperature then sends every other logit to -inf instead of inf/inf = NaN
    probs = torch.softmax((scores - scores.max(dim=-1, keepdim=True).values) / temperature, dim=-1)
    if top_p < 1.0:
        sorted_p, idx = probs.sort(dim=-1, descending=True)
        drop = sorted_p.cumsum(-1) - sorted_p > top_p
        sorted_p = sorted_p.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter_(-1, idx, sorted_p)
    return torch.stack([torch.multinomial(probs[i], 1, generator=g) for i, g in enumerate(generators)])
