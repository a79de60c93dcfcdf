"""`facemend evaluate`: score a model or baseline on BFR / SR x8 / SR x16 (§5, Table 1, Fig. 7).

Two modes, told apart by a leading positional word:
  facemend evaluate --data DIR [--identities CSV] --method M [--weights W] --out RUN_DIR ...
  facemend evaluate compare RUN_DIR [RUN_DIR ...] [--out DIR]
The second prints one merged Table 1-style markdown (and with --out writes compare.md and the
merged Fig. 7 plots there).
"""

from __future__ import annotations

import argparse

HELP = "evaluate a model or baseline (PSNR, SSIM, LPIPS, FID, iPrecision/iRecall); or compare runs"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("compare", nargs="*", metavar="compare RUN_DIR",
                   help="merge finished runs into one table: `compare RUN_DIR [RUN_DIR ...]`")
    p.add_argument("--data", help="folder of aligned HQ faces (png/jpg/webp)")
    p.add_argument("--identities", metavar="CSV",
                   help="identity labels `file,identity` (needed for iPrecision/iRecall)")
    p.add_argument("--method", default="model", choices=("model", "identity", "bicubic", "lanczos"),
                   help="what to evaluate (baselines: identity, bicubic, lanczos)")
    p.add_argument("--weights", help="generator weights folder for --method model")
    p.add_argument("--tasks", default=None, help="comma list of bfr,sr8,sr16 (default: all)")
    p.add_argument("--out", help="run folder to write (compare: where to write compare.md)")
    p.add_argument("--resolution", type=int, default=None, help="test image side (default 512)")
    p.add_argument("--limit", type=int, default=None, help="use only the first N images")
    p.add_argument("--cache", default=None,
                   help="test-set cache folder (default RUN_DIR/testset); share it across runs")
    p.add_argument("--lpips-net", default="vgg", choices=("vgg", "alex"), help="LPIPS backbone")
    p.add_argument("--lpips-dir", default=None, help="LPIPS weights folder ($FACEMEND_LPIPS_DIR)")
    p.add_argument("--fid-dir", default=None, help="FID Inception weights folder "
                   "($FACEMEND_FID_DIR)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--save-outputs", action="store_true",
                   help="also write each restored image to RUN_DIR/outputs/TASK/NAME.png "
                   "(input of `facemend study create`)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override an EvalConfig value, e.g. eval.k=5 or eval.seed=1")


def run(args: argparse.Namespace) -> int:
    import sys

    from facemend.config import ConfigError, EvalConfig, apply_overrides, from_dict

    if args.compare:
        if args.compare[0] != "compare" or len(args.compare) < 2:
            print("error: positional arguments are only for `facemend evaluate compare RUN_DIR...`",
                  file=sys.stderr)
            return 2
        from facemend.evaluation import compare

        try:
            print(compare(args.compare[1:], args.out), end="")
        except (FileNotFoundError, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        return 0
    if not args.data or not args.out:
        print("error: --data and --out are required (or use `evaluate compare RUN_DIR...`)",
              file=sys.stderr)
        return 2
    data: dict = {}
    if args.tasks:
        data["tasks"] = [t.strip() for t in args.tasks.split(",") if t.strip()]
    if args.resolution:
        data["resolution"] = args.resolution
    try:
        overrides = [s[len("eval."):] if s.startswith("eval.") else s for s in args.set]
        cfg = from_dict(EvalConfig, apply_overrides(data, overrides), "eval")
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    from facemend.evaluation import evaluate
    from facemend.evaluation.features import FeatureError
    from facemend.evaluation.testsets import TestSetError
    from facemend.io import ImageError

    try:
        res = evaluate(args.data, args.out, args.method, identities=args.identities,
                       weights=args.weights, cfg=cfg, cache=args.cache, limit=args.limit,
                       lpips_net=args.lpips_net, lpips_dir=args.lpips_dir, fid_dir=args.fid_dir,
                       progress=not args.no_progress, save_outputs=args.save_outputs)
    except (TestSetError, ImageError, FeatureError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for note, why in sorted(res["notes"].items()):
        print(f"note: {note} not computed: {why}", file=sys.stderr)
    from pathlib import Path

    print((Path(args.out) / "results.md").read_text(encoding="utf-8"), end="")
    return 0
