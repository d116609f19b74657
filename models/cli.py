"""Headless command line: critique images to JSONL, or parse a saved critique.

    rationalrewards critique --model TIGER-Lab/RationalRewards-8B-T2I --models-dir ~/models/rationalrewards \
        --prompt "a red fox in the snow" fox1.png fox2.png --out critiques.jsonl
    rationalrewards critique --model ... --source before.png --prompt "make it night" after.png
    rationalrewards parse answer.txt [--task edit]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from PIL import Image

from .backends.base import GenerationOptions
from .parser import parse_critique
from .rubric import WEIGHT_PRESETS, Task


def _critique(args: argparse.Namespace) -> int:
    from .loader import load_critic

    critic = load_critic(args.model, args.models_dir, allow_download=args.allow_download, dtype=args.dtype,
                         device=args.device, max_pixels=args.max_pixels, batch_size=args.batch_size)
    options = GenerationOptions(max_new_tokens=args.max_new_tokens, temperature=args.temperature, seed=args.seed)
    images = [Image.open(p) for p in args.images]
    sources = [Image.open(args.source)] * len(images) if args.source else None
    critiques = critic.critique(images, args.prompt, options, sources=sources)
    out = open(args.out, "a", encoding="utf-8") if args.out else sys.stdout
    try:
        for path, crit in zip(args.images, critiques):
            record = {"image": str(path), "prompt": args.prompt, "source": args.source} | crit.to_dict(args.weights)
            out.write(json.dumps(record, ensure_ascii=False, allow_nan=False) + "\n")
    finally:
        if out is not sys.stdout:
            out.close()
    return 0


def _parse(args: argparse.Namespace) -> int:
    text = Path(args.file).read_text(encoding="utf-8") if args.file != "-" else sys.stdin.read()
    crit = parse_critique(text, Task(args.task))
    print(json.dumps(crit.to_dict(args.weights), ensure_ascii=False, indent=2, allow_nan=False))
    return 0 if crit.complete else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rationalrewards", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("critique", help="critique images against a prompt; one JSON line per image")
    c.add_argument("images", nargs="+", type=Path)
    c.add_argument("--prompt", required=True, help="the prompt (or editing instruction with --source)")
    c.add_argument("--source", help="source image: critiques the images as edits of it")
    c.add_argument("--model", required=True, help="checkpoint folder name, absolute path or Hugging Face id")
    c.add_argument("--models-dir", action="append", default=[], help="folder(s) holding checkpoint folders")
    c.add_argument("--allow-download", action="store_true", help="fetch a missing checkpoint from Hugging Face")
    c.add_argument("--dtype", default="auto", choices=["auto", "bf16", "fp16", "fp32"])
    c.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"])
    c.add_argument("--max-pixels", type=int, default=None)
    c.add_argument("--batch-size", type=int, default=4)
    c.add_argument("--max-new-tokens", type=int, default=2048)
    c.add_argument("--temperature", type=float, default=0.1)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--weights", default="equal", choices=sorted(WEIGHT_PRESETS))
    c.add_argument("--out", help="append JSON lines to this file (default: stdout)")
    c.set_defaults(func=_critique)
    p = sub.add_parser("parse", help="parse a saved critique text (exit 1 when a score is missing)")
    p.add_argument("file", help="text file, or - for stdin")
    p.add_argument("--task", default="t2i", choices=[t.value for t in Task])
    p.add_argument("--weights", default="equal", choices=sorted(WEIGHT_PRESETS))
    p.set_defaults(func=_parse)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "critique" and not args.models_dir and not Path(args.model).is_absolute():
        args.models_dir = [str(Path.cwd())]
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
