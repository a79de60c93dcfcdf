"""`facemend export`: write the generator as ONNX (dynamic batch; zero or explicit noise)."""

from __future__ import annotations

import argparse

HELP = "export the generator to ONNX (dynamic batch; noise fixed at zero or explicit inputs)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--onnx", required=True, metavar="OUT.onnx", help="ONNX file to write")
    p.add_argument("--weights", default=None, metavar="DIR",
                   help="weights folder (default: the bundled weights/default)")
    p.add_argument("--config", default=None, metavar="YAML",
                   help="export a randomly initialised model of this config instead of weights")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset version (default 17)")
    p.add_argument("--noise", choices=("zero", "input"), default="zero",
                   help="zero: deterministic graph; input: one noise input per noise site")
    p.add_argument("--check", action="store_true",
                   help="run onnxruntime on a random input and report the max difference")


def run(args: argparse.Namespace) -> int:
    import torch

    from facemend.config import ConfigError, RunConfig, load_config
    from facemend.export import export_onnx
    from facemend.models.generator import Generator
    from facemend.models.pretrained import WeightsError, from_pretrained

    try:
        if args.config is not None:
            torch.manual_seed(0)
            G = Generator(load_config(RunConfig, args.config, []).model).eval()
        else:
            G = from_pretrained(args.weights)
    except (ConfigError, WeightsError) as e:
        print(f"error: {e}")
        return 2
    try:
        import onnx  # noqa: F401
    except ImportError:
        print("error: the onnx package is not installed: pip install 'facemend[onnx]'")
        return 2
    path = export_onnx(G, args.onnx, opset=args.opset, noise=args.noise)
    size_mb = path.stat().st_size / 2**20
    n_noise = len(G.noise_shapes(1)) if args.noise == "input" else 0
    print(f"wrote {path} ({size_mb:.1f} MiB, opset {args.opset}, {G.cfg.resolution} px, "
          f"{n_noise} noise inputs, dynamic batch)")
    mode = ("deterministic: noise scale 0" if args.noise == "zero"
            else "--noise-scale and --seed apply")
    print(f"restore with: facemend restore --backend onnx --onnx {path} PHOTO... ({mode})")
    if args.check:
        from facemend.inference.onnx_backend import OnnxRestorer

        H = G.cfg.resolution
        x = torch.rand(2, 3, H, H, generator=torch.Generator().manual_seed(0)) * 2 - 1
        scale = 0.0 if args.noise == "zero" else 1.0
        eps = G.make_noise(2, torch.Generator().manual_seed(1)) if scale else None
        with torch.inference_mode():
            ref = G(x, noise=eps, noise_scale=scale)
        out = OnnxRestorer(path, noise_scale=scale).run(x, eps)
        print(f"onnxruntime vs torch: max abs diff {float((out - ref).abs().max()):.2e}")
    return 0
