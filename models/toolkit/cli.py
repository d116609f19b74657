"""Headless command line: critique images (or a whole manifest) to JSONL, or parse a saved critique.

    rationalrewards critique --model TIGER-Lab/RationalRewards-8B-T2I --models-dir ~/models/rationalrewards \
        --prompt "a red fox in the snow" fox1.png fox2.png --out critiques.jsonl
    rationalrewards critique --model ... --source before.png --prompt "make it night" after.png
    rationalrewards critique --manifest rows.parquet --server http://gpu1:8000/v1 --server http://gpu2:8000/v1 \
        --model rationalrewards-t2i --shard 0/4 --out shard0.jsonl     # resumable
    rationalrewards critique --manifest s3://bucket/rows.parquet --engine ray --model RationalRewards-8B-T2I \
        --models-dir /mnt/models --ray-actors 1-8 --out s3://bucket/critiques/   # on a Ray cluster, resumable
    rationalrewards parse answer.txt [--task edit]
    rationalrewards parrot prefs.jsonl --out parrot/ --server http://127.0.0.1:8000/v1 \
        --model Qwen/Qwen3-VL-32B-Instruct [--margin 1] [--phases anchor,filter,project,export,distill]
    rationalrewards parrot genai_bench/ --format genai-bench --out parrot/ --server ... --model ...
    rationalrewards refine --pipeline ./sd-turbo --model RationalRewards-8B-T2I --prompt "a fox" --out runs/
    rationalrewards export ~/models/rationalrewards/RationalRewards-8B-T2I --format fp8 \
        --out ComfyUI/models/text_encoders/RationalRewards-8B-T2I_fp8_scaled.safetensors
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Sequence

from PIL import Image

from ..backends.base import GenerationOptions
from ..judging.critique import overall_label
from ..judging.parser import parse_critique
from ..judging.rubric import WEIGHT_PRESETS, Task
from ..judging.rules import UNREADABLE_HELP, UnreadableReward


def _critic_specs(args: argparse.Namespace) -> list:
    """What the arguments ask for, as factory specs: one per ``--server`` URL, or one checkpoint."""
    from ..runtime.factory import CheckpointSpec, ServerSpec

    template_dirs = (args.template_dir,) if args.template_dir else ()
    if args.server:
        return [ServerSpec(url, args.model or "", api_key_env=args.api_key_env, timeout_s=args.timeout,
                           retries=args.retries, max_pixels=args.max_pixels, template_dirs=template_dirs)
                for url in args.server]
    name = str(Path(args.model_dir).resolve()) if args.model_dir else args.model
    if not name:
        raise SystemExit("rationalrewards: give --model NAME (with --models-dir), --model-dir DIR, or "
                         "--server URL")
    dirs = args.models_dir or ([] if args.model_dir or Path(name).is_absolute() else [str(Path.cwd())])
    return [CheckpointSpec(name, tuple(str(Path(d).resolve()) for d in dirs), args.allow_download, dtype=args.dtype,
                           device=args.device, max_pixels=args.max_pixels, batch_size=args.batch_size,
                           template_dirs=template_dirs, adapter=str(args.adapter.resolve()) if args.adapter else None)]


def _script(args: argparse.Namespace):
    from ..critic.script import AnswerScript

    return AnswerScript.from_text(Path(args.replay).read_text(encoding="utf-8")) if args.replay else None


def _make_critics(args: argparse.Namespace) -> list:
    """The critic(s) the arguments ask for, built by the one factory."""
    from ..runtime.factory import build_critic

    script = _script(args)
    critics = [build_critic(spec) for spec in _critic_specs(args)]
    return [c.with_script(script) for c in critics] if script else critics


def _options(args: argparse.Namespace) -> GenerationOptions:
    return GenerationOptions(max_new_tokens=args.max_new_tokens, temperature=args.temperature, seed=args.seed)


def _critique(args: argparse.Namespace) -> int:
    if args.manifest:
        return _critique_manifest(args)
    if args.engine == "ray":
        raise SystemExit("rationalrewards critique --engine ray: critiques a --manifest (a few images on the command "
                         "line run here, without Ray)")
    if not args.images or args.prompt is None:
        raise SystemExit("rationalrewards critique: give image files and --prompt, or --manifest FILE")
    from ..critic.critic import Item
    from .dispatch import Dispatcher
    from .manifest import output_record

    critics = _make_critics(args)
    task = Task.EDIT if args.source else Task.T2I
    source = Image.open(args.source) if args.source else None
    items = [Item(task, "pointwise", args.prompt, (img,) if source is None else (source, img))
             for img in (Image.open(p) for p in args.images)]
    with Dispatcher(critics, args.max_concurrency) as pool:   # one path for in-process and served critics
        outcomes = pool.map(items, _options(args))
    failed = [o for o in outcomes if not o.ok]
    if failed:
        raise SystemExit(f"rationalrewards critique: {args.images[failed[0].index]}: {failed[0].error_text}")
    lines = "".join(json.dumps(output_record(outcome, args.weights, image=str(path), prompt=args.prompt,
                                             source=args.source), ensure_ascii=False, allow_nan=False) + "\n"
                    for path, outcome in zip(args.images, outcomes))
    if args.out:
        from .outputs import append_atomic
        append_atomic(args.out, lines, f"none of this command's {len(outcomes)} critique(s) were added")
    else:
        sys.stdout.write(lines)
    return 0


def _critique_manifest(args: argparse.Namespace) -> int:
    from .manifest import parse_shard

    if args.images or args.source:
        raise SystemExit("rationalrewards critique: --manifest takes its images, prompts and sources from the file; "
                         "leave out image arguments and --source")
    if not args.out:
        raise SystemExit("rationalrewards critique --manifest needs --out FILE.jsonl (the run resumes from it)")
    shard = parse_shard(args.shard)
    if args.engine == "ray":
        if shard != (0, 1):
            raise SystemExit("rationalrewards critique: --shard splits a manifest between machines without a cluster; "
                             "with --engine ray, Ray spreads the rows over its actors: leave --shard out")
        report = _critique_manifest_ray(args)
        where = f"{report.total} rows in the manifest"
    else:
        from .dispatch import Dispatcher
        from .manifest import critique_manifest
        with Dispatcher(_make_critics(args), args.max_concurrency) as pool:
            report = critique_manifest(args.manifest, args.out, pool, options=_options(args), shard=shard,
                                       task=args.task, weights=args.weights, progress=not args.no_progress)
        where = f"of {report.in_shard} rows in shard {args.shard}; {report.total} in the manifest"
    errors = f"{args.out}.errors" + ("" if args.engine == "ray" else ".jsonl")
    print(f"{report.written} written, {report.already_done} already in {args.out}, {len(report.failed)} failed "
          f"({where})" + (f"; failed rows listed in {errors}" if report.failed else ""), file=sys.stderr)
    return 0 if not report.failed else 1


def _critique_manifest_ray(args: argparse.Namespace):
    from ..runtime.compat import DependencyError
    try:
        from .ray_engine import RayResources, critique_manifest_ray
    except DependencyError as e:
        raise SystemExit(f"rationalrewards critique --engine ray: {e}") from None
    resources = RayResources(actors=args.ray_actors, gpus_per_actor=args.ray_gpus_per_actor,
                             cpus_per_actor=args.ray_cpus_per_actor, batch_size=args.ray_batch_size,
                             concurrency_per_actor=args.max_concurrency)
    return critique_manifest_ray(args.manifest, args.out, _critic_specs(args), options=_options(args), task=args.task,
                                 weights=args.weights, script=_script(args), resources=resources,
                                 progress=not args.no_progress, address=args.ray_address)


def _actors(text: str) -> int | tuple[int, int | None]:
    """``N`` (a fixed pool), ``MIN-MAX`` or ``MIN-`` (autoscaling bounds; no MAX: as many as fit)."""
    try:
        if "-" not in text:
            n = int(text)
            if n >= 1:
                return n
        else:
            lo, hi = text.split("-", 1)
            bounds = int(lo), (int(hi) if hi.strip() else None)
            if bounds[0] >= 1 and (bounds[1] is None or bounds[1] >= bounds[0]):
                return bounds
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"{text!r}: give N (a fixed pool), MIN-MAX or MIN- (autoscaling), N and MIN >= 1")


def _eval(args: argparse.Namespace) -> int:
    from .benchmarks import read_benchmark
    from .evaluate import cache_path_for, collect_answers, format_table, published_for, read_cache, score

    pairs = read_benchmark(args.format, args.data, args.task)
    if args.limit:
        pairs = pairs[:args.limit]
    tasks = sorted({p.task.value for p in pairs})
    if len(tasks) > 1:
        raise SystemExit(f"rationalrewards eval: {args.data} mixes tasks {tasks}; pass --task or split the data")
    task = tasks[0] if tasks else (args.task or "t2i")
    cache = Path(args.cache) if args.cache else cache_path_for(args.out)
    failed: dict = {}
    skipped: dict = {}
    model = args.model
    if not args.rescore:
        from .dispatch import Dispatcher
        critics = _make_critics(args)
        model = critics[0].name
        with Dispatcher(critics, args.max_concurrency) as pool:
            report = collect_answers(pairs, pool, cache, args.mode, _options(args), progress=not args.no_progress)
        failed, skipped = report.failed, report.skipped
    elif not cache.exists():
        raise SystemExit(f"rationalrewards eval --rescore: no answer cache at {cache}; run without --rescore first "
                         "(or point --cache at it)")
    results = score(pairs, read_cache(cache, args.mode), mode=args.mode, rule=args.rule, aspects=args.aspects,
                    seed=args.seed, resamples=args.bootstrap, failed=failed, skipped=skipped)
    results = {"format": args.format, "task": task, "data": str(args.data), "model": model, "cache": str(cache),
               **results, "published": published_for(args.format, task)}
    from .outputs import RERUN, write_atomic
    write_atomic(args.out, json.dumps(results, indent=2, ensure_ascii=False, allow_nan=False) + "\n",
                 f"{args.out} is as it was and every answer is kept in {cache}",
                 f"{RERUN} with --rescore (it asks the critic nothing)")
    print(format_table(results))
    return 0


def _parse(args: argparse.Namespace) -> int:
    text = Path(args.file).read_text(encoding="utf-8") if args.file != "-" else sys.stdin.read()
    crit = parse_critique(text, Task(args.task))
    print(json.dumps(crit.to_dict(args.weights, args.unreadable), ensure_ascii=False, indent=2, allow_nan=False))
    return 0 if crit.complete else 1


def add_critic_arguments(c: argparse.ArgumentParser) -> None:
    """Where critiques come from: ``--server`` URL(s) of an OpenAI-compatible API, or a local checkpoint."""
    g = c.add_argument_group("critic")
    g.add_argument("--model", default="", help="checkpoint folder name, absolute path or Hugging Face id; with "
                                               "--server the model name the server serves (empty: its only one)")
    g.add_argument("--model-dir", help="a checkpoint folder (config.json + safetensors)")
    g.add_argument("--models-dir", action="append", default=[], help="folder(s) holding checkpoint folders")
    g.add_argument("--server", action="append", default=[],
                   help="base URL of an OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1; repeat for "
                        "several replicas (requests are spread over them)")
    g.add_argument("--api-key-env", default="", help="NAME of the environment variable holding the API key")
    g.add_argument("--max-concurrency", type=int, default=None,
                   help="requests in flight over all servers (default: 4 per server); per actor with --engine ray")
    g.add_argument("--timeout", type=float, default=300.0, help="seconds per server request")
    g.add_argument("--retries", type=int, default=3, help="retries on connection errors, 429 and 5xx")
    g.add_argument("--allow-download", action="store_true", help="fetch a missing checkpoint from Hugging Face")
    g.add_argument("--adapter", type=Path, default=None,
                   help="a LoRA adapter folder (e.g. from parrot's distill phase) merged into the checkpoint")
    g.add_argument("--dtype", default="auto", choices=["auto", "bf16", "fp16", "fp32"])
    g.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"])
    g.add_argument("--max-pixels", type=int, default=-1,
                   help="downscale larger images; -1 (default): the checkpoint's training size (802,816 px for "
                        "RationalRewards), 0: the processor decides")
    g.add_argument("--batch-size", type=int, default=4)
    g.add_argument("--template-dir", default=None, help="folder whose template files override the shipped ones")
    g.add_argument("--replay", default=None, help="a file with a critique text (answers every request) or JSON "
                                                  "rules, as the Replay Critique Answers node takes")
    g.add_argument("--max-new-tokens", type=int, default=2048)
    g.add_argument("--temperature", type=float, default=0.1)
    g.add_argument("--seed", type=int, default=0)


def _has_critic(args: argparse.Namespace) -> bool:
    return bool(args.server or args.model or args.model_dir)


def _one_critic(args: argparse.Namespace, command: str):
    critics = _make_critics(args)
    if len(critics) != 1:
        raise SystemExit(f"rationalrewards {command}: give one --server (it calls one critic)")
    return critics[0]


def _parrot(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from . import parrot
    from .preferences import read_manifest

    phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    unknown = set(phases) - set(parrot.PHASES) - {"distill"}
    if unknown:
        raise SystemExit(f"rationalrewards parrot: unknown phase(s) {', '.join(sorted(unknown))}; "
                         f"choose from {', '.join(parrot.PHASES + ('distill',))}")
    if "distill" in phases and not args.student_model:     # said before any teacher call, not after
        raise SystemExit("rationalrewards parrot: the distill phase needs --student-model (the critic to train)")
    config = parrot.ParrotConfig(margin=args.margin, drop_contradicting=not args.keep_contradicting,
                                 tie_contradicts=args.tie_contradicts, weights=args.weights,
                                 kinds=tuple(k.strip() for k in args.kinds.split(",") if k.strip()),
                                 link=args.link, chunk=args.chunk)
    make = (lambda: _one_critic(args, "parrot")) if _has_critic(args) else None   # loaded on the first new answer
    teacher = parrot.Teacher(make, _options(args))
    bars: list = []

    def progress(phase: str, total: int):
        bar = tqdm(total=total, desc=f"parrot {phase}", unit="answer", file=sys.stderr)
        bars.append(bar)
        return bar.update

    if args.format:
        from .benchmarks import read_benchmark
        from .preferences import from_benchmark
        pairs, skipped = from_benchmark(read_benchmark(args.format, args.manifest, args.task), args.out / "images")
        for pair_id, why in list(skipped.items())[:10]:
            print(f"parrot: pair {pair_id} left out: {why}", file=sys.stderr)
        if skipped:
            print(f"parrot: {len(skipped)} of {len(pairs) + len(skipped)} {args.format} pair(s) left out",
                  file=sys.stderr)
        if not pairs:
            raise SystemExit(f"rationalrewards parrot: no usable pair in {args.manifest}")
    elif args.task:
        raise SystemExit("rationalrewards parrot: --task goes with --format (a manifest's source column says the task)")
    else:
        pairs = read_manifest(args.manifest)
    try:
        summary = parrot.run(pairs, args.out, teacher, config, [p for p in phases if p != "distill"],
                             template_dir=args.template_dir, progress=progress)
    except parrot.TeacherNeeded as e:
        raise SystemExit(f"rationalrewards parrot: {e}") from None
    finally:
        for bar in bars:
            bar.close()
    print(summary.text())
    if "distill" in phases:
        from .distill import DistillConfig, distill
        result = distill(Path(args.out) / "export", args.student_model, args.models_dir or [str(Path.cwd())],
                         Path(args.out) / "student",
                         DistillConfig(steps=args.steps, learning_rate=args.learning_rate, lora_r=args.lora_r,
                                       batch_size=args.train_batch_size))
        print(f"distill: {result.steps} step(s), loss {result.losses[0]:.4f} -> {result.losses[-1]:.4f}; "
              f"LoRA adapter in {result.adapter_dir}")
    return 0


def _parrot_parser(sub) -> None:
    from .benchmarks import FORMATS
    from .parrot import EXPORT_KINDS, LINK_MODES, PHASES

    r = sub.add_parser("parrot", help="PARROT rationale data: anchored rationales, consistency filter, pointwise "
                                      "projection, SFT export (and an optional LoRA distillation)")
    r.add_argument("manifest", type=Path,
                   help="the preference set: a manifest (JSONL, JSON, CSV or parquet: prompt, image_a, image_b, "
                        "preferred[, source][, id]), or with --format a benchmark file or folder")
    r.add_argument("--format", choices=FORMATS, default=None,
                   help="read the preference set as this benchmark (the readers of `rationalrewards eval`); "
                        "embedded images are written to OUT/images/")
    r.add_argument("--task", choices=[t.value for t in Task], default=None,
                   help="with --format: force T2I or Edit (default: a source image means an edit)")
    r.add_argument("--out", required=True, type=Path, help="folder for the phase files, summary and export")
    r.add_argument("--phases", default=",".join(PHASES),
                   help=f"comma list of {', '.join(PHASES)}, distill (default: all but distill); saved answers "
                        "are reused, so a phase re-run with other thresholds asks the teacher nothing")
    add_critic_arguments(r)   # the teacher: loaded only when a phase needs a new answer
    r.add_argument("--chunk", type=int, default=8, help="requests per teacher call; answers are saved after each")
    f = r.add_argument_group("filtering and export")
    f.add_argument("--margin", type=float, default=0.0,
                   help="consistency: the preferred image's score total must beat the other's by at least this")
    f.add_argument("--keep-contradicting", action="store_true",
                   help="keep projections whose overall score puts the preferred image lower")
    f.add_argument("--tie-contradicts", action="store_true", help="equal projection scores count as contradicting")
    f.add_argument("--weights", default="equal", choices=sorted(WEIGHT_PRESETS))
    f.add_argument("--kinds", default=",".join(EXPORT_KINDS), help="records to export: pointwise, pairwise")
    f.add_argument("--link", default="copy", choices=LINK_MODES, help="how images are placed beside the export")
    d = r.add_argument_group("distill (LoRA SFT with TRL + PEFT on the export)")
    d.add_argument("--student-model", help="critic checkpoint to fine-tune (folder name, path or id)")
    d.add_argument("--steps", type=int, default=100)
    d.add_argument("--learning-rate", type=float, default=1e-4)
    d.add_argument("--lora-r", type=int, default=16)
    d.add_argument("--train-batch-size", type=int, default=1)
    r.set_defaults(func=_parrot)


def _refine(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from ..judging.loop import StopRule
    from .pipeline_loop import (Job, LoopSettings, is_done, job_folder, load_pipeline, pipeline_generator,
                                read_prompts, run_loop, write_result)

    if bool(args.prompt) == bool(args.prompts):
        raise SystemExit("rationalrewards refine: give --prompt TEXT or --prompts FILE (one of them)")
    jobs = ([Job(args.prompt, Path(args.source) if args.source else None)] if args.prompt
            else read_prompts(args.prompts))
    if not _has_critic(args):
        raise SystemExit("rationalrewards refine: give the critic: --model (with --models-dir), --model-dir, "
                         "or --server URL")
    settings = LoopSettings(StopRule(tuple(d.strip() for d in args.stop_dimensions.split(",") if d.strip()),
                                     args.threshold, args.max_rounds, args.stop_when_no_improvement),
                            seed=args.seed, seed_policy=args.seed_policy, mode=args.mode, keep=args.keep,
                            weights=args.weights)
    options = _options(args)
    out = Path(args.out)
    todo = [(i, j) for i, j in enumerate(jobs) if not is_done(out / job_folder(i, j))] if args.prompts \
        else list(enumerate(jobs))
    if not todo:
        print(f"refine: all {len(jobs)} prompt(s) already done in {out}")
        return 0
    critic = _one_critic(args, "refine")
    pipe = load_pipeline(args.pipeline, args.pipelines_dir, allow_download=args.allow_download,
                         dtype=args.pipeline_dtype, device=args.device, edit=any(j.source for _, j in todo))
    call = {"num_inference_steps": args.steps, "guidance_scale": args.guidance, "height": args.height,
            "width": args.width, "negative_prompt": args.negative_prompt, "strength": args.strength}
    bar = tqdm(total=len(jobs), initial=len(jobs) - len(todo), desc="refine", unit="prompt", file=sys.stderr,
               disable=len(jobs) == 1)
    try:
        for i, job in todo:
            source = Image.open(job.source).convert("RGB") if job.source else None
            job_settings = settings if job.seed is None else replace(settings, seed=int(job.seed))
            result = run_loop(pipeline_generator(pipe, source, **call), critic, job.prompt, job_settings,
                              source=source, options=options)
            folder = out if args.prompt else out / job_folder(i, job)
            write_result(result, folder, {"original_prompt": job.prompt, "pipeline": args.pipeline,
                                          "source": str(job.source) if job.source else None,
                                          "seed_policy": settings.seed_policy})
            best = result.history.rounds[result.best_index]
            bar.write(f"{folder}: best round {result.history.best if result.history.best is not None else -1} "
                      f"(overall {overall_label(best.overall)}) of "
                      f"{len(result.history.rounds)}; stopped: {result.history.stop_reason}")
            bar.update(1)
    finally:
        bar.close()
    return 0


def _refine_parser(sub) -> None:
    from ..judging.loop import DEFAULT_STOP_DIMENSIONS, SEED_POLICIES
    from ..judging.refine import MODES

    r = sub.add_parser("refine", help="Generate-Critique-Refine with a diffusers pipeline (text-to-image, or "
                                      "editing with --source): each round's image, the best image, a history JSON")
    r.add_argument("--pipeline", required=True, help="DiffusionPipeline folder, folder name or Hugging Face id")
    r.add_argument("--pipelines-dir", action="append", default=[], help="folder(s) holding pipeline folders")
    r.add_argument("--pipeline-dtype", default="auto", choices=["auto", "bf16", "fp16", "fp32"])
    r.add_argument("--prompt", help="one prompt (or editing instruction with --source)")
    r.add_argument("--source", help="source image: edit it with an image-to-image pipeline")
    r.add_argument("--prompts", help="a .txt (one prompt a line) or .jsonl (prompt, source, seed, id) list; "
                                     "finished prompts are skipped on a re-run")
    r.add_argument("--out", required=True, help="output folder")
    add_critic_arguments(r)
    g = r.add_argument_group("loop (the same rules as the ComfyUI loop nodes)")
    g.add_argument("--max-rounds", type=int, default=3)
    g.add_argument("--stop-dimensions", default=",".join(DEFAULT_STOP_DIMENSIONS))
    g.add_argument("--threshold", type=float, default=3.0)
    g.add_argument("--stop-when-no-improvement", action=argparse.BooleanOptionalAction, default=True,
                   help="stop when a round scores no better than the best before it (default on)")
    g.add_argument("--seed-policy", default="same", choices=SEED_POLICIES)
    g.add_argument("--mode", default="merge", choices=MODES)
    g.add_argument("--keep", default="", help="comma-separated phrases the refined prompt must keep verbatim")
    g.add_argument("--weights", default="equal", choices=sorted(WEIGHT_PRESETS))
    p = r.add_argument_group("pipeline call (left out: the pipeline's defaults)")
    p.add_argument("--steps", type=int)
    p.add_argument("--guidance", type=float)
    p.add_argument("--height", type=int)
    p.add_argument("--width", type=int)
    p.add_argument("--negative-prompt")
    p.add_argument("--strength", type=float, help="image-to-image: how much of the source is redrawn")
    r.set_defaults(func=_refine)


def _export(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from ..runtime.checkpoints import CheckpointNotFound, resolve_checkpoint
    from .export import ExportError, export

    try:
        folder = resolve_checkpoint(args.checkpoint, args.models_dir or [str(Path.cwd())])
    except CheckpointNotFound as e:
        raise SystemExit(f"rationalrewards export: {e}") from None
    suffix = "bf16" if args.format == "bf16" else "fp8_scaled"
    out = Path(args.out) if args.out else Path.cwd() / f"{folder.name}_{suffix}.safetensors"
    if out.is_dir():
        out = out / f"{folder.name}_{suffix}.safetensors"
    if out.exists() and not args.force:
        raise SystemExit(f"rationalrewards export: {out} exists; pass --force to replace it")
    with tqdm(total=0, unit="tensor", disable=args.no_progress, desc=f"export {args.format}") as bar:
        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)
        try:
            result = export(folder, out, args.format, progress=progress,
                            template_dirs=(args.template_dir,) if args.template_dir else ())
        except ExportError as e:
            raise SystemExit(f"rationalrewards export: {e}") from None
    for note in result.notes:
        print(f"rationalrewards export: note: {note}", file=sys.stderr)
    print(f"{result.path} ({result.bytes / 1e9:.2f} GB, {args.format}, {result.tensors} tensors"
          f"{f', {result.fp8_layers} layers in fp8' if result.fp8_layers else ''}); put it in ComfyUI's "
          "models/text_encoders/ and pick it on Load RationalRewards Critic (ComfyUI native)")
    return 0


def _export_parser(sub) -> None:
    from .export import FORMATS

    x = sub.add_parser("export", help="a Qwen3-VL critic checkpoint folder -> one .safetensors for ComfyUI's "
                                      "models/text_encoders/ (bf16, or fp8 in ComfyUI's scaled layout), streamed "
                                      "shard by shard")
    x.add_argument("checkpoint", help="checkpoint folder (config.json + *.safetensors, sharded or not), or its "
                                      "name in --models-dir")
    x.add_argument("--models-dir", action="append", default=[], help="folder(s) holding checkpoint folders")
    x.add_argument("--format", choices=FORMATS, default="bf16",
                   help="bf16: ~17.5 GB for the 8B critic; fp8: the language model's linear layers in 8 bits "
                        "(~10.6 GB), for 12-16 GB cards")
    x.add_argument("--out", help="output file or folder (default: <checkpoint>_<format>.safetensors here)")
    x.add_argument("--template-dir", help="your template folder, if you critique with your own templates (their "
                                          "hashes are recorded in the file)")
    x.add_argument("--force", action="store_true", help="replace an existing output file")
    x.add_argument("--no-progress", action="store_true")
    x.set_defaults(func=_export)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rationalrewards", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("critique", help="critique images against a prompt, or a whole manifest; one JSON line "
                                        "per image")
    c.add_argument("images", nargs="*", type=Path)
    c.add_argument("--prompt", help="the prompt (or editing instruction with --source)")
    c.add_argument("--source", help="source image: critiques the images as edits of it")
    c.add_argument("--manifest", help="JSONL, JSON, CSV or parquet rows with image, prompt and optional source "
                                      "and id columns (paths relative to the manifest); resumable with --out")
    c.add_argument("--shard", default="0/1", help="K/N: critique only the rows whose id hashes to K modulo N "
                                                  "(K from 0), so N machines split one manifest")
    c.add_argument("--task", choices=[t.value for t in Task], default=None,
                   help="with --manifest: force the task (default: edit for rows with a source, else t2i)")
    add_critic_arguments(c)
    c.add_argument("--weights", default="equal", choices=sorted(WEIGHT_PRESETS))
    c.add_argument("--out", help="add the JSON lines to this file, all of a command's at once (default: stdout); "
                                 "with --manifest resumable; with --engine ray a folder of part-*.jsonl files")
    c.add_argument("--no-progress", action="store_true", help="no progress bar")
    r = c.add_argument_group("engine (with --manifest)")
    r.add_argument("--engine", choices=["single", "ray"], default="single",
                   help="single: this process (and --server replicas); ray: a Ray Data pipeline on the Ray cluster "
                        "(pip install -e '.[ray]'), from a laptop to `ray job submit`")
    r.add_argument("--ray-address", default=None,
                   help="Ray cluster to join (default: RAY_ADDRESS, as `ray job submit` sets it, else a local Ray)")
    r.add_argument("--ray-actors", type=_actors, default=None,
                   help="critic actors: N, or MIN-MAX / MIN- to autoscale (default: 1-, one per GPU that fits, for "
                        "a checkpoint on GPUs; else 1)")
    r.add_argument("--ray-gpus-per-actor", type=float, default=None,
                   help="GPUs each actor reserves (default: 1 for a checkpoint when the cluster has GPUs, else 0)")
    r.add_argument("--ray-cpus-per-actor", type=float, default=1.0, help="CPUs each actor reserves")
    r.add_argument("--ray-batch-size", type=int, default=None,
                   help="rows per actor call, written together (default: --batch-size for a checkpoint, "
                        "--max-concurrency for servers)")
    c.set_defaults(func=_critique)
    e = sub.add_parser("eval", help="preference accuracy of a critic on a benchmark (resumable; --rescore "
                                    "recomputes from the answer cache)")
    e.add_argument("--format", required=True, choices=["mmrb2", "genai-bench", "editreward-bench"])
    e.add_argument("--data", required=True, type=Path, help="the benchmark's parquet/JSON file, or a folder of them")
    e.add_argument("--task", choices=[t.value for t in Task], default=None,
                   help="t2i or edit (default: from the file: a source image means edit)")
    e.add_argument("--mode", choices=["pairwise", "pointwise"], default="pairwise",
                   help="pairwise: one comparison per pair; pointwise: critique each image, compare the totals")
    e.add_argument("--rule", choices=["published", "strict"], default="published",
                   help="published: missing/N/A scores count 2.5 and every pair is decided (the authors' rule); "
                        "strict: an unreadable score leaves the pair undecided (counted wrong)")
    e.add_argument("--aspects", choices=["all", "text", "visual"], default="all",
                   help="which dimensions the totals sum (the authors' modes)")
    e.add_argument("--out", required=True, help="results JSON; raw answers are cached beside it (*.answers.jsonl)")
    e.add_argument("--cache", default=None, help="answer cache JSONL (default: beside --out)")
    e.add_argument("--rescore", action="store_true", help="recompute the results from the cache, without the model")
    e.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the 95%% interval")
    e.add_argument("--limit", type=int, default=0, help="evaluate only the first N pairs")
    e.add_argument("--no-progress", action="store_true")
    add_critic_arguments(e)
    e.set_defaults(func=_eval)
    p = sub.add_parser("parse", help="parse a saved critique text (exit 1 when a score is missing)")
    p.add_argument("file", help="text file, or - for stdin")
    p.add_argument("--task", default="t2i", choices=[t.value for t in Task])
    p.add_argument("--weights", default="equal", choices=sorted(WEIGHT_PRESETS))
    p.add_argument("--unreadable", default="nan", choices=[r.value for r in UnreadableReward],
                   help="; ".join(UNREADABLE_HELP.values()))
    p.set_defaults(func=_parse)
    _parrot_parser(sub)
    _refine_parser(sub)
    _export_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from ..errors import RationalRewardsError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except RationalRewardsError as e:   # something the user can fix (a file, a folder, a server, space): say what
        raise SystemExit(f"rationalrewards {args.command}: {e}") from None


if __name__ == "__main__":
    sys.exit(main())
