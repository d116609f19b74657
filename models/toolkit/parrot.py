"""PARROT: Preference-Anchored Rationalization, the authors' recipe for critique training data.

From preference pairs (prompt, image A, image B[, source], preferred) and a *teacher* (any
:class:`~rationalrewards.critic.critic.Critic`: an OpenAI-compatible server or an in-process model):

1. ``anchor``  -- the teacher writes the pairwise comparison *told* which image people preferred
   (``templates/parrot_anchored.txt`` appended to the pairwise prompt). An answer whose own
   totals do not favour the preferred image is dropped.
2. ``filter``  -- the teacher, *not* told the label, reads that reasoning (justifications and
   summary; the scores and winner lines are left out so they cannot simply be copied) and judges
   the pair again. The pair is kept only when the preferred image wins by at least ``margin`` on
   the score totals (the authors' rule: N/A counts 2.5).
3. ``project`` -- for kept pairs, the teacher critiques each image alone with the pointwise
   prompt, conditioned on the validated reasoning; a projection whose overall score puts the
   preferred image below the other contradicts the label and is dropped (configurable).
4. ``export``  -- SFT data: LLaMA-Factory's ShareGPT layout (``messages`` + ``images``, with a
   ``dataset_info.json`` entry) and TRL's conversational layout, images copied or linked beside
   the files. The student's prompt is the plain, label-free template, so it learns what it will
   be asked.

Each teacher phase keeps its own JSONL (one line per answer, raw text kept) in the output folder, and
the decisions under the current thresholds in ``<phase>.decisions.jsonl`` beside it. A re-run reuses
every answer found there and only recomputes the decisions, so phases can run on
different machines, resume after a crash, and be re-run with other thresholds without a new
teacher call. ``distill.py`` trains a LoRA student on the export.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

from PIL import Image

from ..backends.base import GenerationOptions
from ..critic.critic import Critic, Item
from ..judging.critique import PairwiseCritique
from ..judging.parser import parse_critique, parse_pairwise
from .preferences import PreferencePair
from ..critic.prompting import IMAGE_MARKER, ChatRequest, load_template, render, template_name
from ..judging.rubric import Task
from .manifest import ResumableJsonl
from .outputs import RERUN, Staged, write_atomic
from ..errors import RationalRewardsError

TEACHER_PHASES = ("anchor", "filter", "project")
PHASES = TEACHER_PHASES + ("export",)
EXPORT_KINDS = ("pointwise", "pairwise")
LINK_MODES = ("copy", "symlink", "hardlink")
DATASET_NAME = "rationalrewards_parrot"
FILES = {"anchor": "anchored.jsonl", "filter": "consistency.jsonl", "project": "projection.jsonl"}
MODES = {"anchor": "anchored", "filter": "consistency", "project": "projection"}   # script rule modes

# Why a sample was dropped (the summary counts these strings).
TIE_LABEL = "label is a tie (PARROT needs a preferred image)"
ANCHOR_UNREADABLE = "anchored answer unreadable"
ANCHOR_CONTRADICTS = "anchored scores do not favour the preferred image"
CONSISTENCY_UNREADABLE = "consistency answer unreadable"
NOT_RECOVERED = "label not recovered without it"
BELOW_MARGIN = "label recovered below the margin"
PROJECTION_UNREADABLE = "projection unreadable"
PROJECTION_CONTRADICTS = "projection contradicts the label"

_THINK = re.compile(r"^.*</think>", re.DOTALL)


@dataclass(frozen=True)
class ParrotConfig:
    """Thresholds and export choices. Changing them never needs new teacher answers."""
    margin: float = 0.0                  # filter: preferred total - other total must be >= margin (and > 0)
    drop_contradicting: bool = True      # project: drop projections that put the preferred image lower
    tie_contradicts: bool = False        # project: equal overall scores count as a contradiction too
    weights: str = "equal"               # how a projection's overall score is computed
    kinds: tuple[str, ...] = EXPORT_KINDS
    link: str = "copy"                   # how export places images: copy, symlink or hardlink
    chunk: int = 8                       # teacher requests per call (answers are saved after each)

    def __post_init__(self) -> None:
        if self.margin < 0 or math.isnan(self.margin):
            raise ValueError("margin must be a number >= 0")
        if not self.kinds or set(self.kinds) - set(EXPORT_KINDS):
            raise ValueError(f"export kinds must be some of {EXPORT_KINDS}; got {self.kinds!r}")
        if self.link not in LINK_MODES:
            raise ValueError(f"link must be one of {LINK_MODES}; got {self.link!r}")
        if self.chunk < 1:
            raise ValueError("chunk must be at least 1")


class TeacherNeeded(RationalRewardsError, RuntimeError):
    """A phase needs new teacher answers but no teacher was configured."""


class Teacher:
    """A critic made on first use, so phases whose answers are all saved never load a model."""

    def __init__(self, make: Callable[[], Critic] | Critic | None, options: GenerationOptions | None = None):
        self._make = make
        self._critic = make if isinstance(make, Critic) else None
        self.options = options or GenerationOptions()

    @property
    def critic(self) -> Critic:
        if self._critic is None:
            if self._make is None:
                raise TeacherNeeded("this phase needs new teacher answers: give a teacher (--model, --model-dir, "
                                    "or --server URL with --model NAME)")
            self._critic = self._make()
        return self._critic

    @property
    def name(self) -> str:
        c = self._critic
        return c.name if c is not None else ""

    @property
    def template_dir(self) -> str | Path | None:
        """The template folder of a critic already made (None before: loading it just for this is not worth it)."""
        return self._critic.template_dir if self._critic is not None else None

    def ask(self, asks: Sequence["_Ask"]) -> list[str]:
        critic = self.critic
        return critic.answer([critic.prepare(a.item()) for a in asks], self.options)   # images open here, a chunk at a time


@dataclass(frozen=True)
class _Ask:
    key: str
    phase: str
    pair: PreferencePair
    sides: tuple[str, ...]       # the candidate images shown, after the source (if any)
    fields: dict
    script_request: str

    def item(self) -> Item:
        """The teacher call as an item: the critique template of its shape plus the phase's addendum
        (``critic.critic.ADDENDA``), scripted by rules of the phase's mode matched on ``script_request``."""
        p = self.pair
        src = (_open(p.source),) if p.source is not None else ()
        return Item(p.task, MODES[self.phase], p.prompt, src + tuple(_open(p.image(s)) for s in self.sides),
                    tuple((k, str(v)) for k, v in self.fields.items()), self.script_request)


# -- the per-phase answer files ------------------------------------------------------------------------

class PhaseFile:
    """One phase's teacher answers, append-only and resumable (``manifest.ResumableJsonl``: a line cut by a
    crash is dropped and asked again), and beside it ``<phase>.decisions.jsonl``, rewritten each run with
    the decisions under the current thresholds."""

    def __init__(self, path: Path):
        self.path = path
        self.records: dict[str, dict] = {}
        if path.is_file():
            ResumableJsonl(path, key="key").close()          # trims a partial last line
            for line in path.read_text(encoding="utf-8").splitlines():
                rec = json.loads(line) if line.strip() else None
                if isinstance(rec, dict) and isinstance(rec.get("key"), str) and isinstance(rec.get("raw"), str):
                    self.records[rec["key"]] = rec
        self.decisions: dict[str, dict] = {}

    @property
    def decisions_path(self) -> Path:
        return self.path.with_name(self.path.stem + ".decisions.jsonl")

    def append(self, records: Iterable[dict]) -> None:
        with ResumableJsonl(self.path, key="key") as out:
            for rec in records:
                out.write(rec)
                self.records[rec["key"]] = rec

    def decide(self, key: str, **decision) -> None:
        self.decisions[key] = {"key": key} | decision

    def write_decisions(self, order: Sequence[str]) -> None:
        """Replace the decisions file in one step (it is recomputed from the answers on every run)."""
        write_atomic(self.decisions_path,
                     "".join(json.dumps(self.decisions[k], ensure_ascii=False, allow_nan=False) + "\n"
                             for k in order if k in self.decisions),
                     f"{self.decisions_path.name} is as it was and every teacher answer is kept in {self.path.name}",
                     f"{RERUN} (saved answers are not asked again)")


def _answer(teacher: Teacher, store: PhaseFile, asks: Sequence[_Ask], counts: Counter,
            progress: Callable[[int], None] | None, chunk: int) -> None:
    """Ask the teacher for every ``ask`` without a saved answer; save each chunk as it comes back."""
    todo = [a for a in asks if a.key not in store.records]
    counts["reused"] += len(asks) - len(todo)
    for start in range(0, len(todo), chunk):
        part = todo[start:start + chunk]
        answers = teacher.ask(part)
        store.append({"key": a.key, "raw": ans, "teacher": teacher.name} for a, ans in zip(part, answers))
        counts["asked"] += len(part)
        if progress is not None:
            progress(len(part))


# -- reasoning shown to later phases --------------------------------------------------------------------

def rationale_digest(pairwise: PairwiseCritique) -> str:
    """Justifications and summary of a comparison, without its scores and winner lines."""
    lines = []
    for d in pairwise.dimensions.values():
        if d.justification:
            lines.append(f"{d.title}: {d.justification}")
    if pairwise.summary:
        lines.append(f"Summary: {pairwise.summary}")
    return "\n".join(lines).replace(IMAGE_MARKER, "[image]")


def _margin_win(pairwise: PairwiseCritique, preferred: str) -> float:
    """Preferred total minus the other's; NaN when unreadable (the strict rule: PARROT drops such pairs)."""
    ta, tb = pairwise.totals("strict")
    return (ta - tb) if preferred == "A" else (tb - ta)


def clean_answer(raw: str) -> str:
    """The answer the student should learn: a reasoning model's ``<think>`` block removed."""
    return _THINK.sub("", raw).strip()


# -- the pipeline ---------------------------------------------------------------------------------------

@dataclass
class PhaseSummary:
    name: str
    considered: int = 0
    kept: int = 0
    asked: int = 0            # new teacher answers this run
    reused: int = 0           # answers read back from the phase file
    dropped: dict[str, int] = field(default_factory=dict)

    @property
    def kept_fraction(self) -> float | None:
        return self.kept / self.considered if self.considered else None


@dataclass
class Summary:
    pairs: int
    phases: list[PhaseSummary] = field(default_factory=list)
    exported: dict[str, int] = field(default_factory=dict)
    export_dir: str | None = None

    def phase(self, name: str) -> PhaseSummary | None:
        return next((p for p in self.phases if p.name == name), None)

    def to_dict(self) -> dict:
        return {"pairs": self.pairs, "phases": [asdict(p) | {"kept_fraction": p.kept_fraction} for p in self.phases],
                "exported": self.exported, "export_dir": self.export_dir}

    def text(self) -> str:
        lines = [f"PARROT: {self.pairs} preference pair(s)"]
        for p in self.phases:
            frac = "" if p.kept_fraction is None else f" ({100 * p.kept_fraction:.1f}% kept)"
            lines.append(f"  {p.name:<8} {p.kept}/{p.considered} kept{frac}; teacher answers: {p.asked} new, "
                         f"{p.reused} reused")
            for reason, n in sorted(p.dropped.items(), key=lambda kv: -kv[1]):
                lines.append(f"           dropped {n}: {reason}")
        anchor, filt = self.phase("anchor"), self.phase("filter")
        if anchor is not None and filt is not None and self.pairs:
            labelled = self.pairs - anchor.dropped.get(TIE_LABEL, 0)
            share = f" ({100 * filt.kept / labelled:.1f}%)" if labelled else ""
            lines.append(f"  pairs kept through the consistency filter: {filt.kept} of {labelled} labelled{share}")
        if self.exported:
            lines.append("  export   " + ", ".join(f"{n} {k} record(s)" for k, n in self.exported.items())
                         + (f" -> {self.export_dir}" if self.export_dir else ""))
        return "\n".join(lines)


def _phase_summary(name: str, considered: int, counts: Counter, dropped: Counter, kept: int) -> PhaseSummary:
    return PhaseSummary(name, considered, kept, counts["asked"], counts["reused"], dict(dropped))


def _judge_pairs(store: PhaseFile, phase: str, cands: Sequence[PreferencePair], order: Sequence[str],
                 dropped: Counter, reason_of: Callable[[float], str],
                 fields: Callable[[PreferencePair, PairwiseCritique, float], dict]
                 ) -> dict[str, tuple[PairwiseCritique, str]]:
    """The anchor and filter phases' verdicts: each saved pairwise answer parsed, its margin for the
    preferred image judged by ``reason_of`` ("" = kept), the decision written beside the answers.
    Returns ``{pair id: (parsed, raw answer)}`` of the kept pairs; counts the dropped in ``dropped``."""
    kept: dict[str, tuple[PairwiseCritique, str]] = {}
    for p in cands:
        rec = store.records.get(p.id)
        if rec is None:
            dropped[f"not answered yet (run the {phase} phase)"] += 1
            continue
        parsed = parse_pairwise(rec["raw"], p.task)
        win = _margin_win(parsed, p.preferred)
        reason = reason_of(win)
        store.decide(p.id, **fields(p, parsed, win), kept=not reason, reason=reason or None)
        if reason:
            dropped[reason] += 1
        else:
            kept[p.id] = (parsed, rec["raw"])
    store.write_decisions(order)
    return kept


def run(pairs: Sequence[PreferencePair], out_dir: str | Path, teacher: Teacher | None = None,
        config: ParrotConfig | None = None, phases: Sequence[str] = PHASES,
        template_dir: str | Path | None = None,
        progress: Callable[[str, int], Callable[[int], None]] | None = None) -> Summary:
    """Run ``phases`` (in pipeline order) over ``pairs``; answers and decisions land in ``out_dir``.

    A phase not listed still has its saved decisions recomputed from its file (no teacher call), so
    ``phases=["export"]`` re-exports with new thresholds. ``progress(phase, total)`` returns a
    callback counting finished requests.
    """
    config = config or ParrotConfig()
    unknown = set(phases) - set(PHASES)
    if unknown:
        raise ValueError(f"unknown PARROT phase(s) {sorted(unknown)}; phases are {', '.join(PHASES)}")
    teacher = teacher or Teacher(None)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    template_dir = template_dir if template_dir is not None else teacher.template_dir
    summary = Summary(pairs=len(pairs))
    order = [p.id for p in pairs]

    def tick(phase: str, total: int):
        return progress(phase, total) if progress is not None and total else None

    def stage(phase: str, asks: list[_Ask]) -> tuple[PhaseFile, Counter]:
        store, counts = PhaseFile(out / FILES[phase]), Counter()
        if phase in phases:
            _answer(teacher, store, asks, counts, tick(phase, sum(a.key not in store.records for a in asks)),
                    config.chunk)
        else:
            counts["reused"] = sum(a.key in store.records for a in asks)
        return store, counts

    # 1. anchored generation
    labelled = [p for p in pairs if p.preferred in ("A", "B")]
    asks = [_Ask(p.id, "anchor", p, ("A", "B"), {"preferred": p.preferred}, p.prompt) for p in labelled]
    store, counts = stage("anchor", asks)
    dropped: Counter = Counter({TIE_LABEL: len(pairs) - len(labelled)} if len(labelled) < len(pairs) else {})
    anchored = _judge_pairs(
        store, "anchor", labelled, order, dropped,
        lambda win: ANCHOR_UNREADABLE if math.isnan(win) else ANCHOR_CONTRADICTS if win <= 0 else "",
        lambda p, parsed, win: dict(prompt=p.prompt, preferred=p.preferred, task=p.task.value,
                                    winner=parsed.decide("strict").winner.value))
    anchored_raw = {pid: raw for pid, (_, raw) in anchored.items()}
    summary.phases.append(_phase_summary("anchor", len(pairs), counts, dropped, len(anchored)))

    # 2. consistency filtering
    by_id = {p.id: p for p in pairs}
    digests = {pid: rationale_digest(c) for pid, (c, _) in anchored.items()}
    cands = [by_id[pid] for pid in order if pid in anchored]
    asks = [_Ask(p.id, "filter", p, ("A", "B"), {"rationale": digests[p.id]}, p.prompt) for p in cands]
    store, counts = stage("filter", asks)
    dropped = Counter()
    consistent = _judge_pairs(
        store, "filter", cands, order, dropped,
        lambda win: (CONSISTENCY_UNREADABLE if math.isnan(win) else NOT_RECOVERED if win <= 0
                     else BELOW_MARGIN if win < config.margin else ""),
        lambda p, parsed, win: dict(preferred=p.preferred, recovered=parsed.decide("strict").winner.value,
                                    win_margin=None if math.isnan(win) else win, margin=config.margin))
    kept_pairs = [p for p in cands if p.id in consistent]
    summary.phases.append(_phase_summary("filter", len(cands), counts, dropped, len(kept_pairs)))

    # 3. pointwise projection
    asks = [_Ask(f"{p.id}:{side}", "project", p, (side,), {"rationale": digests[p.id], "side": side},
                 f"{p.prompt} [image {side}]")
            for p in kept_pairs for side in ("A", "B")]
    store, counts = stage("project", asks)
    dropped = Counter()
    projections: list[tuple[PreferencePair, str, str]] = []     # (pair, side, answer)
    for p in kept_pairs:
        recs = {s: store.records.get(f"{p.id}:{s}") for s in ("A", "B")}
        overall = {}
        for s, rec in recs.items():
            if rec is not None:
                overall[s] = parse_critique(rec["raw"], p.task).overall(config.weights)
        other = "B" if p.preferred == "A" else "A"
        contradicts = False
        if all(s in overall and not math.isnan(overall[s]) for s in ("A", "B")):
            gap = overall[p.preferred] - overall[other]
            contradicts = gap < 0 or (config.tie_contradicts and gap == 0)
        for s, rec in recs.items():
            if rec is None:
                dropped["not answered yet (run the project phase)"] += 1
                continue
            reason = (PROJECTION_UNREADABLE if math.isnan(overall[s])
                      else PROJECTION_CONTRADICTS if contradicts and config.drop_contradicting else "")
            store.decide(f"{p.id}:{s}", id=p.id, side=s, preferred=p.preferred,
                         overall=None if math.isnan(overall[s]) else overall[s], contradicts=contradicts,
                         kept=not reason, reason=reason or None)
            if reason:
                dropped[reason] += 1
            else:
                projections.append((p, s, rec["raw"]))
    store.write_decisions([f"{pid}:{s}" for pid in order for s in ("A", "B")])
    summary.phases.append(_phase_summary("project", 2 * len(kept_pairs), counts, dropped, len(projections)))

    # 4. export
    if "export" in phases:
        summary.exported = export(out / "export", kept_pairs, anchored_raw, projections, config, template_dir)
        summary.export_dir = str(out / "export")
    write_atomic(out / "summary.json", json.dumps(summary.to_dict(), indent=2),
                 "every teacher answer is kept in the phase files", f"{RERUN} (saved answers are not asked again)")
    return summary


def _open(path: Path) -> Image.Image:
    with Image.open(path) as img:
        img.load()
        return img.copy()


# -- export ---------------------------------------------------------------------------------------------

_PLACEHOLDER = Image.new("RGB", (16, 16))


def student_request(task: Task, mode: str, prompt: str, template_dir: str | Path | None = None) -> ChatRequest:
    """The prompt the student will be asked at inference: the plain template, no label, no rationale.

    Rendered the same way the critic renders it (placeholder images; only the text is exported)."""
    template = load_template(template_name(task, mode), template_dir)
    return render(template, prompt.strip().replace(IMAGE_MARKER, "[image]"),
                  [_PLACEHOLDER] * template.count(IMAGE_MARKER))


def _place_image(src: Path, folder: Path, link: str, cache: dict[Path, str], stage: Staged) -> str:
    """Put ``src`` in ``folder`` under a content-hash name (shared images are stored once); its relative path.
    A copy is staged (renamed into place with the export), so a name that exists holds the whole image."""
    if src in cache:
        return cache[src]
    digest = hashlib.sha256(src.read_bytes()).hexdigest()[:20]
    target = folder / f"{digest}{src.suffix.lower() or '.png'}"
    if not target.exists():
        if link == "symlink":
            stage.path(target).symlink_to(src.resolve())
        elif link == "hardlink":
            os.link(src, stage.path(target))
        else:
            stage.copy(src, target)
    cache[src] = f"{folder.name}/{target.name}"
    return cache[src]


def _llamafactory(req: ChatRequest, answer: str) -> list[dict]:
    user = "".join(IMAGE_MARKER if kind == "image" else part for kind, part in req.parts)
    system = [{"role": "system", "content": req.system}] if req.system else []
    return system + [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]


def _trl(req: ChatRequest, answer: str) -> dict:
    """TRL's conversational prompt-completion layout (the loss then covers the critique only)."""
    content = [{"type": "image"} if kind == "image" else {"type": "text", "text": part}
               for kind, part in req.parts]
    system = [{"role": "system", "content": [{"type": "text", "text": req.system}]}] if req.system else []
    return {"prompt": system + [{"role": "user", "content": content}],
            "completion": [{"role": "assistant", "content": [{"type": "text", "text": answer}]}]}


def dataset_info_entry(file_name: str) -> dict:
    """The ``dataset_info.json`` entry LLaMA-Factory needs for a multimodal ShareGPT file."""
    return {"file_name": file_name, "formatting": "sharegpt",
            "columns": {"messages": "messages", "images": "images"},
            "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                     "assistant_tag": "assistant", "system_tag": "system"}}


def export(folder: str | Path, kept_pairs: Sequence[PreferencePair], anchored_raw: dict[str, str],
           projections: Sequence[tuple[PreferencePair, str, str]], config: ParrotConfig,
           template_dir: str | Path | None = None) -> dict[str, int]:
    """Write ``<name>.json`` + ``dataset_info.json`` (LLaMA-Factory) and ``trl.jsonl`` (TRL) into ``folder``.

    Every file (and every new image) is staged and the set renamed into place at the end: a failed export
    leaves the previous one whole, never a mix of the two."""
    folder = Path(folder)
    with Staged(f"the export in {folder} is as it was and every teacher answer is kept in the phase files",
                f"{RERUN} (with --phases export it asks the teacher nothing)") as stage:
        return _export(folder, kept_pairs, anchored_raw, projections, config, template_dir, stage)


def _export(folder: Path, kept_pairs: Sequence[PreferencePair], anchored_raw: dict[str, str],
            projections: Sequence[tuple[PreferencePair, str, str]], config: ParrotConfig,
            template_dir: str | Path | None, stage: Staged) -> dict[str, int]:
    images_dir, cache = folder / "images", {}
    rows: list[tuple[str, ChatRequest, str, list[str], dict]] = []   # kind, prompt, answer, images, meta
    if "pairwise" in config.kinds:
        for p in kept_pairs:
            files = ([p.source] if p.source else []) + [p.image_a, p.image_b]
            rows.append(("pairwise", student_request(p.task, "pairwise", p.prompt, template_dir),
                         clean_answer(anchored_raw[p.id]), [_place_image(f, images_dir, config.link, cache, stage)
                                                            for f in files],
                         {"id": p.id, "preferred": p.preferred}))
    if "pointwise" in config.kinds:
        for p, side, raw in projections:
            files = ([p.source] if p.source else []) + [p.image(side)]
            rows.append(("pointwise", student_request(p.task, "pointwise", p.prompt, template_dir),
                         clean_answer(raw), [_place_image(f, images_dir, config.link, cache, stage) for f in files],
                         {"id": p.id, "side": side}))
    main_file = f"{DATASET_NAME}.json"
    lf = [{"messages": _llamafactory(req, ans), "images": imgs} for _, req, ans, imgs, _ in rows]
    stage.write_text(folder / main_file, json.dumps(lf, ensure_ascii=False, indent=1))
    info_path = folder / "dataset_info.json"
    info = json.loads(info_path.read_text(encoding="utf-8")) if info_path.is_file() else {}
    info[DATASET_NAME] = dataset_info_entry(main_file)
    stage.write_text(info_path, json.dumps(info, indent=2))
    stage.write_text(folder / "trl.jsonl", "".join(json.dumps(_trl(req, ans) | {"images": imgs, "kind": kind} | meta,
                                                              ensure_ascii=False) + "\n"
                                                   for kind, req, ans, imgs, meta in rows))
    return dict(Counter(kind for kind, *_ in rows))
