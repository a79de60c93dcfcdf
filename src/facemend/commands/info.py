"""`facemend info`: describe a model config or a weights folder (sizes, skips, parameters)."""

from __future__ import annotations

import argparse

HELP = "describe a model config (YAML) or weights folder: resolution, skips, parameters"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", help="config YAML (with a `model:` section) or weights folder")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. model.num_skips=2")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from facemend.config import ConfigError, RunConfig, load_config
    from facemend.models.discriminator import Discriminator
    from facemend.models.generator import Generator

    try:
        src = Path(args.source)
        if src.is_dir():
            from facemend.models.pretrained import load_config_from_dir

            model_cfg = load_config_from_dir(src)
        else:
            model_cfg = load_config(RunConfig, src, args.set).model
    except ConfigError as e:
        print(f"error: {e}")
        return 2
    g = Generator(model_cfg)
    d = Discriminator(model_cfg)
    n_g = sum(p.numel() for p in g.parameters())
    n_d = sum(p.numel() for p in d.parameters())
    print(f"resolution {model_cfg.resolution}, skips at {list(model_cfg.skip_resolutions)}, "
          f"fusion {model_cfg.fusion}, quantize {model_cfg.quantize}, noise {model_cfg.noise}")
    print(f"generator {n_g / 1e6:.2f}M parameters, discriminator {n_d / 1e6:.2f}M parameters")
    return 0
