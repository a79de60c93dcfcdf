"""`facemend train`: train the paper's model on folders of aligned faces (1 CPU to N GPUs)."""

from __future__ import annotations

import argparse

HELP = "train the model on folders of aligned faces or face packs (single process or DDP)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", action="append", default=[], metavar="YAML",
                   help="YAML with model:/degradation:/train: sections (e.g. "
                   "configs/paper-512.yaml); repeat to lay later files over earlier ones "
                   "(configs/recipes/); defaults when omitted")
    p.add_argument("--data", action="append", default=[], metavar="DIR",
                   help="folder of aligned face images (recursive), or a face pack "
                   "(FILE.pack from `facemend pack`); repeat for several")
    p.add_argument("--out", required=True, help="run folder: checkpoints, log, samples, final/")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. train.steps=2000 (repeatable)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default auto)")
    p.add_argument("--threads", type=int, default=0,
                   help="torch CPU threads (0 = torch's default)")
    p.add_argument("--stop-at", type=int, default=None, metavar="STEP",
                   help="stop after this step with a checkpoint (resume later with --resume)")
    p.add_argument("--max-minutes", type=float, default=None, metavar="M",
                   help="stop after M minutes of training with a checkpoint, like --stop-at")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--export-ema", metavar="DIR", default=None,
                   help="do not train: write the EMA generator of OUT's latest checkpoint to DIR "
                   "(a weights folder for `facemend restore --weights DIR`)")


def run(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    import torch

    from facemend.config import ConfigError, RunConfig, load_config
    from facemend.facepack import is_pack
    from facemend.models.pretrained import WeightsError
    from facemend.training.loop import TrainingDivergedError, train

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.export_ema:
        from facemend.training.checkpoint import export_ema
        from facemend.training.loop import CKPT

        try:
            print(f"weights: {export_ema(Path(args.out) / CKPT, args.export_ema)}")
        except WeightsError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        return 0
    if not args.data:
        print("error: --data DIR is required (a folder of aligned face images)", file=sys.stderr)
        return 2
    try:
        cfg = load_config(RunConfig, args.config, args.set)
        for d in args.data:
            if not (Path(d).is_file() if is_pack(d) else Path(d).is_dir()):
                raise ConfigError(f"{d}: data {'pack' if is_pack(d) else 'folder'} not found")
        if args.max_minutes is not None and args.max_minutes <= 0:
            raise ConfigError(f"--max-minutes {args.max_minutes:g}: must be above 0")
        final = train(cfg, args.data, args.out, resume=args.resume, device=args.device,
                      stop_at=args.stop_at, max_minutes=args.max_minutes,
                      progress=not args.no_progress)
    except (ConfigError, WeightsError, FileNotFoundError, FileExistsError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except TrainingDivergedError as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    if final.is_dir():
        print(f"weights: {final}")
    return 0
