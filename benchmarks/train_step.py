"""Training-step throughput and peak memory: one config at several resolutions, or several
variants of one recipe side by side (another checkout's code, other `--set` values).

Each measurement runs the real `facemend train` loop in a fresh subprocess (so peak RSS is that
of one run) for `--steps` steps and reads images/s of the second half of the steps from its log
(so a `train.compile` run's compilation is not counted). Variants are run in turn, `--rounds`
times, and reported with their median and their ratio to the first variant:

    python benchmarks/train_step.py --config configs/generative-128.yaml --data DIR \
        --resolutions 128 --threads 1 --steps 16 --rounds 2 \
        --variant "before;src=/path/to/old/checkout/src;drop=train.feature_matching_weight" \
        --variant "after;train.compile=true" --out benchmarks/train_step-generative.json

A variant is `LABEL;item;item...`: `src=DIR` runs that source tree (PYTHONPATH), `drop=KEY`
removes a key from the config (for code that predates it), anything else is a `--set` value.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml


def parse_variant(text: str) -> dict:
    """'label;src=DIR;drop=a.b;a.c=1' -> {'label', 'src', 'drop': [...], 'sets': [...]}."""
    label, *items = [t.strip() for t in text.split(";")]
    v: dict = {"label": label, "src": None, "drop": [], "sets": []}
    for item in filter(None, items):
        if item.startswith("src="):
            v["src"] = item[4:]
        elif item.startswith("drop="):
            v["drop"].append(item[5:])
        else:
            v["sets"].append(item)
    return v


def variant_config(config: str, drop: list[str], tmp: Path) -> str:
    """The config file with `drop` keys removed (written to tmp), or the config itself."""
    if not drop:
        return config
    data = yaml.safe_load(Path(config).read_text())
    for key in drop:
        section, name = key.split(".", 1)
        data.get(section, {}).pop(name, None)
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def measure(config: str, data: str, resolution: int, steps: int, threads: int,
            extra: list[str], src: str | None = None, drop: list[str] | None = None) -> dict:
    """images/s (second half of the run) and peak RSS (MB) of one training run."""
    with tempfile.TemporaryDirectory() as tmp:
        half = max(1, steps // 2)
        cmd = [sys.executable, "-m", "facemend", "train", "--data", data,
               "--config", variant_config(config, drop or [], Path(tmp)),
               "--out", str(Path(tmp) / "run"), "--threads", str(threads), "--no-progress",
               "--set", f"model.resolution={resolution}", "--set", f"train.steps={steps}",
               "--set", f"train.log_every={half}", "--set", f"train.sample_every={10 * steps}",
               "--set", f"train.ckpt_every={10 * steps}"]
        for s in extra:
            cmd += ["--set", s]
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        if src:
            env["PYTHONPATH"] = src
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
    p.add_argument("--config", default="configs/ablation-64.yaml")
    p.add_argument("--data", required=True)
    p.add_argument("--resolutions", type=int, nargs="+", default=[64, 128, 256])
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--set", action="append", default=[], dest="extra",
                   help="a config value for every variant")
    p.add_argument("--variant", action="append", default=[],
                   help="LABEL;src=DIR;drop=KEY;KEY=VALUE... (repeat; default: one plain run)")
    p.add_argument("--rounds", type=int, default=1, help="times each variant is run, in turn")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    variants = [parse_variant(v) for v in args.variant] or [parse_variant("run")]
    results = []
    for h in args.resolutions:
        for rnd in range(args.rounds):
            for v in variants:
                r = measure(args.config, args.data, h, args.steps, args.threads,
                            args.extra + v["sets"], v["src"], v["drop"])
                r.update(label=v["label"], round=rnd, src=v["src"], drop=v["drop"])
                print(json.dumps(r), flush=True)
                results.append(r)
    summary = []
    for h in args.resolutions:
        med = {v["label"]: statistics.median(r["images_per_s"] for r in results
                                             if r["label"] == v["label"] and r["resolution"] == h)
               for v in variants}
        first = med[variants[0]["label"]]
        for label, speed in med.items():
            summary.append({"resolution": h, "label": label, "images_per_s": speed,
                            "ratio": round(speed / first, 3)})
            print(f"{h:5d} px  {label:24s} {speed:7.3f} images/s  x{speed / first:.2f}")
    if args.out:
        Path(args.out).write_text(json.dumps({"config": args.config, "runs": results,
                                              "summary": summary}, indent=2) + "\n")


if __name__ == "__main__":
    main()
