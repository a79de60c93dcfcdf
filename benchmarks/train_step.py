"""Training-step throughput and peak memory of a config at several resolutions.

Runs the real `facemend train` loop in a fresh subprocess per resolution (so peak RSS is that of
one run), for `--steps` steps, and reads images/s of the second half of the steps from its log.

    python benchmarks/train_step.py --config configs/recipes/reconstruction-base.yaml --data DIR \
        --resolutions 64 128 256 --threads 1 --out benchmarks/train_step.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path


def measure(config: str, data: str, resolution: int, steps: int, threads: int,
            extra: list[str]) -> dict:
    """images/s (second half of the run) and peak RSS (MB) of one training run."""
    with tempfile.TemporaryDirectory() as tmp:
        half = max(1, steps // 2)
        cmd = [sys.executable, "-m", "facemend", "train", "--config", config, "--data", data,
               "--out", str(Path(tmp) / "run"), "--threads", str(threads), "--no-progress",
               "--set", f"model.resolution={resolution}", "--set", f"train.steps={steps}",
               "--set", f"train.log_every={half}", "--set", f"train.sample_every={10 * steps}",
               "--set", f"train.ckpt_every={10 * steps}"]
        for s in extra:
            cmd += ["--set", s]
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            raise RuntimeError(proc.stdout[-500:] + proc.stderr[-1500:])
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        rows = [json.loads(ln) for ln in (Path(tmp) / "run" / "log.jsonl").read_text().splitlines()]
        speed = [r["images_per_s"] for r in rows if "images_per_s" in r][-1]
    return {"resolution": resolution, "images_per_s": speed,
            "peak_rss_mb": round(max(peak, before) / 1024, 1), "steps": steps,
            "threads": threads, "overrides": extra}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/recipes/reconstruction-base.yaml")
    p.add_argument("--data", required=True)
    p.add_argument("--resolutions", type=int, nargs="+", default=[64, 128, 256])
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--set", action="append", default=[], dest="extra")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    results = []
    for h in args.resolutions:
        r = measure(args.config, args.data, h, args.steps, args.threads, args.extra)
        print(json.dumps(r), flush=True)
        results.append(r)
    if args.out:
        Path(args.out).write_text(json.dumps({"config": args.config, "runs": results}, indent=2))


if __name__ == "__main__":
    main()
