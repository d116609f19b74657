"""Headless command line: critique images (or a whole manifest) to JSONL, or parse a saved critique.

    rationalrewards critique --model TIGER-Lab/RationalRewards-8B-T2I --models-dir ~/models/rationalrewards \
        --prompt "a red fox in the snow" fox1.png fox2.png --out critiques.jsonl
    rationalrewards critique --model ... --source before.png --prompt "make it night" after.png
    rationalrewards critique --manifest rows.parquet --server http://gpu1:8000/v1 --server http://gpu2:8000/v1 \
        --model rationalrewards-t2i --shard 0/4 --out shard0.jsonl     # resumable
    rationalrewards parse answer.txt [--task edit]
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Sequence

from PIL import Image

from .backends.base import GenerationOptions
from .parser import parse_critique
from .rubric import WEIGHT_PRESETS, Task


def _make_critics(args: argparse.Namespace) -> list:
    """The critic(s) the arguments ask for: one per ``--server`` URL, or one in-process checkpoint."""
    from .script import AnswerScript

    script = AnswerScript.from_json(Path(args.replay).read_text(encoding="utf-8")) if args.replay else None
    if args.server:
        from .dispatch import server_critics
        critics = server_critics(args.server, args.model or "", api_key_env=args.api_key_env,
                                 timeout_s=args.timeout, retries=args.retries, max_pixels=args.max_pixels,
                                 template_dir=args.template_dir)
    else:
        from .loader import load_critic
        name = str(Path(args.model_dir).resolve()) if args.model_dir else args.model
        if not name:
            raise SystemExit("rationalrewards: give --model NAME (with --models-dir), --model-dir DIR, or "
                             "--server URL")
        dirs = args.models_dir or ([] if args.model_dir or Path(name).is_absolute() else [str(Path.cwd())])
        critic = load_critic(name, dirs, allow_download=args.allow_download, dtype=args.dtype,
                             device=args.device, max_pixels=args.max_pixels, batch_size=args.batch_size)
        critics = [replace(critic, template_dir=args.template_dir)]
    return [c.with_script(script) for c in critics] if script else critics


def _options(args: argparse.Namespace) -> GenerationOptions:
    return GenerationOptions(max_new_tokens=args.max_new_tokens, temperature=args.temperature, seed=args.seed)


def _critique(args: argparse.Namespace) -> int:
    if args.manifest:
        return _critique_manifest(args)
    if not args.images or args.prompt is None:
        raise SystemExit("rationalrewards critique: give image files and --prompt, or --manifest FILE")
    from .dispatch import Dispatcher
    from .manifest import critique_record, template_record

    critics = _make_critics(args)
    task = Task.EDIT if args.source else Task.T2I
    images = [Image.open(p) for p in args.images]
    sources = [Image.open(args.source)] * len(images) if args.source else None
    if len(critics) == 1 and not args.server:
        crits = critics[0].critique(images, args.prompt, _options(args), sources=sources)
        used = [critics[0]] * len(crits)
    else:
        from .critic import Item
        items = [Item(task, "pointwise", args.prompt, (img,) if sources is None else (sources[i], img))
                 for i, img in enumerate(images)]
        with Dispatcher(critics, args.max_concurrency) as pool:
            outcomes = pool.map(items, _options(args))
        failed = [o for o in outcomes if not o.ok]
        if failed:
            raise SystemExit(f"rationalrewards critique: {args.images[failed[0].index]}: {failed[0].error_text}")
        crits = [parse_critique(o.answer, task) for o in outcomes]
        used = [o.critic for o in outcomes]
    out = open(args.out, "a", encoding="utf-8") if args.out else sys.stdout
    try:
        for path, crit, critic in zip(args.images, crits, used):
            record = {"image": str(path), "prompt": args.prompt, "source": args.source,
                      "model": critic.name, **template_record(critic, task)} | critique_record(crit, args.weights)
            out.write(json.dumps(record, ensure_ascii=False, allow_nan=False) + "\n")
    finally:
        if out is not sys.stdout:
            out.close()
    return 0


def _critique_manifest(args: argparse.Namespace) -> int:
    from .dispatch import Dispatcher
    from .manifest import critique_manifest, parse_shard

    if args.images or args.source:
        raise SystemExit("rationalrewards critique: --manifest takes its images, prompts and sources from the file; "
                         "leave out image arguments and --source")
    if not args.out:
        raise SystemExit("rationalrewards critique --manifest needs --out FILE.jsonl (the run resumes from it)")
    shard = parse_shard(args.shard)
    with Dispatcher(_make_critics(args), args.max_concurrency) as pool:
        report = critique_manifest(args.manifest, args.out, pool, options=_options(args), shard=shard,
                                   task=args.task, weights=args.weights, progress=not args.no_progress)
    print(f"{report.written} written, {report.already_done} already in {args.out}, {len(report.failed)} failed "
          f"(of {report.in_shard} rows in shard {args.shard}; {report.total} in the manifest)"
          + (f"; failed rows listed in {args.out}.errors.jsonl" if report.failed else ""), file=sys.stderr)
    return 0 if not report.failed else 1


def _parse(args: argparse.Namespace) -> int:
    text = Path(args.file).read_text(encoding="utf-8") if args.file != "-" else sys.stdin.read()
    crit = parse_critique(text, Task(args.task))
    print(json.dumps(crit.to_dict(args.weights), ensure_ascii=False, indent=2, allow_nan=False))
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
                   help="requests in flight over all servers (default: 4 per server)")
    g.add_argument("--timeout", type=float, default=300.0, help="seconds per server request")
    g.add_argument("--retries", type=int, default=3, help="retries on connection errors, 429 and 5xx")
    g.add_argument("--allow-download", action="store_true", help="fetch a missing checkpoint from Hugging Face")
    g.add_argument("--dtype", default="auto", choices=["auto", "bf16", "fp16", "fp32"])
    g.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"])
    g.add_argument("--max-pixels", type=int, default=None)
    g.add_argument("--batch-size", type=int, default=4)
    g.add_argument("--template-dir", default=None, help="folder whose template files override the shipped ones")
    g.add_argument("--replay", default=None, help="JSON answer script (as the Replay Critique Answers node takes): "
                                                  "matching requests get these answers")
    g.add_argument("--max-new-tokens", type=int, default=2048)
    g.add_argument("--temperature", type=float, default=0.1)
    g.add_argument("--seed", type=int, default=0)


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
    c.add_argument("--out", help="append JSON lines to this file (default: stdout)")
    c.add_argument("--no-progress", action="store_true", help="no progress bar")
    c.set_defaults(func=_critique)
    p = sub.add_parser("parse", help="parse a saved critique text (exit 1 when a score is missing)")
    p.add_argument("file", help="text file, or - for stdin")
    p.add_argument("--task", default="t2i", choices=[t.value for t in Task])
    p.add_argument("--weights", default="equal", choices=sorted(WEIGHT_PRESETS))
    p.set_defaults(func=_parse)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
