"""Preference accuracy of a critic on a benchmark (``rationalrewards eval``).

Two steps, so a long run can stop and go on, and be rescored under another rule without the model:

1. :func:`collect_answers` asks the critic about every labelled pair not yet in the answer cache (a
   JSONL beside the results, one line per pair holding the raw answers), in ``pairwise`` mode (one
   comparison per pair) or ``pointwise`` mode (one critique per image). A pair whose request failed is
   counted as failed and asked again by the next run; a pair whose images cannot be read is skipped.
2. :func:`score` turns cached answers into a verdict per pair with the decision rule of
   :mod:`.rules` (``published``: missing and N/A count 2.5, always decides; ``strict``: an unreadable
   score leaves the pair undecided, which counts as wrong) over the chosen aspects, and reports the
   accuracy (predicted A>B / B>A / A=B equals the label, ties included), a seeded 95% bootstrap
   interval, the confusion table, per-dimension agreement and the counts evaluated/failed/skipped.
"""
from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
from tqdm.auto import tqdm

from ..backends.base import GenerationOptions
from .benchmarks import LABELS, PUBLISHED, Pair
from ..critic.critic import CritiqueInputError, Item
from ..judging.critique import PairwiseCritique, PairwiseDimension, Winner
from .dispatch import Dispatcher
from .manifest import ResumableJsonl
from ..judging.parser import parse_critique, parse_pairwise
from ..judging.rubric import Task, dimensions_for
from ..judging.rules import decide
from .tables import load_image

MODES = ("pairwise", "pointwise")
WINNER_LABEL = {Winner.A: "A>B", Winner.B: "B>A", Winner.TIE: "A=B"}


def cache_path_for(out: str | Path) -> Path:
    """The answer cache beside ``results.json``: ``results.answers.jsonl``."""
    out = Path(out)
    return out.with_name(out.stem + ".answers.jsonl")


def cache_key(mode: str, pair_id: str) -> str:
    return f"{mode}:{pair_id}"


@dataclass
class CollectReport:
    asked: int = 0
    cached: int = 0
    failed: dict[str, str] = field(default_factory=dict)     # pair id -> error (request failed)
    skipped: dict[str, str] = field(default_factory=dict)    # pair id -> why (unknown label, bad image)


def _items(pair: Pair, mode: str) -> list[Callable[[], Item]]:
    def load(cell):
        return load_image(cell, pair.base_dir)

    def build(which: str) -> Item:
        if pair.task is Task.EDIT and pair.source is None:
            raise CritiqueInputError("an edit pair without a source image")
        imgs = [load(pair.image_a), load(pair.image_b)]
        src = [load(pair.source)] if pair.task is Task.EDIT else []
        if which == "pair":
            return Item(pair.task, "pairwise", pair.prompt, tuple(src + imgs))
        return Item(pair.task, "pointwise", pair.prompt, tuple(src + [imgs[0 if which == "a" else 1]]))

    kinds = ["pair"] if mode == "pairwise" else ["a", "b"]
    return [lambda k=k: build(k) for k in kinds]


def collect_answers(pairs: list[Pair], dispatcher: Dispatcher, cache: str | Path, mode: str,
                    options: GenerationOptions | None = None, *, progress: bool = True,
                    log: Callable[[str], None] | None = None) -> CollectReport:
    """Ask for every labelled pair missing from ``cache``; append each finished pair's raw answers."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}")
    say = log or (lambda m: print(m, file=sys.stderr))
    report = CollectReport()
    with ResumableJsonl(cache, key="key") as sink:
        todo = []
        for p in pairs:
            if p.label is None:
                report.skipped[p.id] = "no usable preference label"
            elif cache_key(mode, p.id) in sink.ids:
                report.cached += 1
            else:
                todo.append(p)
        per = 1 if mode == "pairwise" else 2
        jobs, owners = [], []
        for k, p in enumerate(todo):
            for j, job in enumerate(_items(p, mode)):
                jobs.append(job)
                owners.append((k, j))
        partial: dict[int, list[str | None]] = {}
        model = ""
        with tqdm(total=len(todo), unit="pair", desc=f"eval ({mode})", dynamic_ncols=True,
                  disable=not progress) as bar:
            for out in dispatcher.run(jobs, options):
                k, j = owners[out.index]
                pair = todo[k]
                if pair.id in report.failed or pair.id in report.skipped:
                    continue
                if not out.ok:
                    bad_input = out.bad_input      # the images could not be read: skipped, not failed
                    (report.skipped if bad_input else report.failed)[pair.id] = out.error_text
                    say(f"pair {pair.id!r} {'skipped' if bad_input else 'failed'}: {out.error_text}")
                    partial.pop(k, None)
                    bar.update(1)
                    continue
                model = model or out.critic.name
                answers = partial.setdefault(k, [None] * per)
                answers[j] = out.answer
                if all(a is not None for a in answers):
                    del partial[k]
                    sink.write({"key": cache_key(mode, pair.id), "id": pair.id, "mode": mode,
                                "task": pair.task.value, "model": model, "answers": answers})
                    report.asked += 1
                    bar.update(1)
    return report


def read_cache(cache: str | Path, mode: str) -> dict[str, list[str]]:
    """Pair id -> raw answers, for ``mode``."""
    found: dict[str, list[str]] = {}
    path = Path(cache)
    if not path.exists():
        return found
    with path.open(encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue   # a partial last line of an interrupted run; collect_answers trims it
            if rec.get("mode") == mode:
                found[str(rec["id"])] = list(rec["answers"])
    return found


def verdict(pair: Pair, answers: list[str], mode: str, rule: str, aspects: str) -> tuple[str | None, dict]:
    """The predicted label (None = undecided) and per-dimension labels of one pair."""
    if mode == "pairwise":
        pc = parse_pairwise(answers[0], pair.task)
    else:
        ca, cb = parse_critique(answers[0], pair.task), parse_critique(answers[1], pair.task)
        pc = PairwiseCritique(pair.task, {d.key: PairwiseDimension(d.key, d.title, a=ca.dimensions.get(d.key),
                                                                   b=cb.dimensions.get(d.key))
                                          for d in dimensions_for(pair.task)})
    decision = decide(pc, rule, aspects)
    dims = {k: WINNER_LABEL.get(d.winner) for k, d in pc.dimensions.items()}
    return WINNER_LABEL.get(decision.winner), dims


def bootstrap_ci(correct: list[bool], *, seed: int = 0, resamples: int = 1000) -> tuple[float, float] | None:
    """Percentile 95% interval of the accuracy, resampling pairs with a seeded generator."""
    if not correct:
        return None
    x = np.asarray(correct, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(resamples, len(x)))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(lo), float(hi)


def score(pairs: list[Pair], cached: dict[str, list[str]], *, mode: str, rule: str = "published",
          aspects: str = "all", seed: int = 0, resamples: int = 1000,
          failed: dict[str, str] | None = None, skipped: dict[str, str] | None = None) -> dict[str, Any]:
    """Accuracy and friends from cached answers (no model needed)."""
    failed, skipped = dict(failed or {}), dict(skipped or {})
    confusion = {lab: {p: 0 for p in (*LABELS, "undecided")} for lab in LABELS}
    dim_hits: dict[str, list[int]] = {}
    correct: list[bool] = []
    not_asked = 0
    undecided = 0
    for pair in pairs:
        if pair.label is None:
            skipped.setdefault(pair.id, "no usable preference label")
            continue
        if pair.id not in cached:
            if pair.id not in failed and pair.id not in skipped:
                not_asked += 1
            continue
        pred, dims = verdict(pair, cached[pair.id], mode, rule, aspects)
        undecided += pred is None
        confusion[pair.label][pred or "undecided"] += 1
        correct.append(pred == pair.label)
        for key, lab in dims.items():
            if lab is not None:
                hits = dim_hits.setdefault(key, [0, 0])
                hits[0] += lab == pair.label
                hits[1] += 1
    n = len(correct)
    acc = sum(correct) / n if n else math.nan
    ci = bootstrap_ci(correct, seed=seed, resamples=resamples)
    return {
        "mode": mode, "rule": rule, "aspects": aspects,
        "accuracy": None if math.isnan(acc) else acc,
        "ci95": None if ci is None else list(ci), "bootstrap": {"resamples": resamples, "seed": seed},
        "counts": {"pairs": len(pairs), "evaluated": n, "correct": int(sum(correct)), "undecided": undecided,
                   "failed": len([k for k in failed if k not in cached]), "skipped": len(skipped),
                   "not_asked": not_asked},
        "confusion": confusion,
        "per_dimension": {k: {"agreement": h[0] / h[1], "n": h[1]} for k, h in dim_hits.items() if h[1]},
        "failed": failed, "skipped": skipped,
    }


def published_for(fmt: str, task: Task | str) -> dict[str, float]:
    return dict(PUBLISHED.get((fmt, Task(task)), {}))


def format_table(results: dict[str, Any]) -> str:
    """The run beside the published figures for the same benchmark and task."""
    c = results["counts"]
    acc = results["accuracy"]
    ci = results["ci95"]
    run = "n/a" if acc is None else f"{100 * acc:.1f}" + (f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else "")
    title = f"{results['format']} {results['task']} ({results['mode']}, rule {results['rule']}, aspects " \
            f"{results['aspects']})"
    lines = [title, f"  this run ({results.get('model') or 'critic'}): {run}  "
             f"[{c['evaluated']} evaluated, {c['failed']} failed, {c['skipped']} skipped, {c['undecided']} undecided]"]
    for judge, value in results.get("published", {}).items():
        lines.append(f"  {judge} (published): {value:.1f}")
    lines.append("  confusion (label -> predicted): " + "; ".join(
        f"{lab}: " + ", ".join(f"{p} {v}" for p, v in row.items()) for lab, row in results["confusion"].items()))
    if results["per_dimension"]:
        lines.append("  per-dimension agreement: " + ", ".join(
            f"{k} {100 * v['agreement']:.1f}% (n={v['n']})" for k, v in results["per_dimension"].items()))
    return "\n".join(lines)


__all__ = ["CollectReport", "MODES", "bootstrap_ci", "cache_key", "cache_path_for", "collect_answers",
           "format_table", "published_for", "read_cache", "score", "verdict"]
