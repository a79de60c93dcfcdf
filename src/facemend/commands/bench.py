"""`facemend bench`: roofline, per-model speed/FLOPs/memory vs peers, e2e and memory test."""

from __future__ import annotations

import argparse

HELP = "benchmark the machine, facemend models and peers (GFPGAN, CodeFormer), ONNX, memory"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="bench.json", help="JSON result (default bench.json)")
    p.add_argument("--md", default=None, metavar="FILE", help="also write a Markdown table")
    p.add_argument("--quick", action="store_true",
                   help="under a minute: default, paper-512, onnx:default; fewer repeats")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads (default: torch's choice; use 1 on a busy machine)")
    p.add_argument("--weights", default=None, metavar="DIR",
                   help="weights folder of the `default` model (default weights/default)")
    p.add_argument("--config", default=None, metavar="YAML",
                   help="config of `default` when no weights are found (default default-64)")
    p.add_argument("--models", default=None,
                   help="comma list from default,paper-512,paper-512-bilinear,GFPGANv1Clean,"
                        "CodeFormer,onnx:default")
    p.add_argument("--skip", default="",
                   help="comma list of parts to skip: roofline,bf16,train,rss,e2e,memory")


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from facemend.bench.report import to_markdown
    from facemend.bench.run import PARTS, BenchOptions, run_bench

    skip = frozenset(s for s in args.skip.split(",") if s)
    if skip - set(PARTS):
        print(f"error: --skip: unknown part(s) {sorted(skip - set(PARTS))}; choose from {PARTS}")
        return 2
    models = tuple(m for m in args.models.split(",") if m) if args.models else None
    opts = BenchOptions(quick=args.quick, threads=args.threads, weights=args.weights,
                        config=args.config, models=models, skip=skip)
    try:
        result = run_bench(opts)
    except ValueError as e:
        print(f"error: {e}")
        return 2
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    md = to_markdown(result)
    if args.md:
        Path(args.md).write_text(md, encoding="utf-8")
    print(md)
    return 0
