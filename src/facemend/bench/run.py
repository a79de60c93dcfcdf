"""`facemend bench`: one run measuring the machine, every model side by side, e2e and memory.

Models: `default` (weights/default, else a random init of
configs/recipes/reconstruction-base.yaml, said in the JSON), `paper-512` (random init) and
`paper-512-bilinear` (the same with GFPGANv1Clean's bilinear upsampling instead of StyleGAN2's
transposed conv), the peers `GFPGANv1Clean` and `CodeFormer` (random weights, same 512 input;
skipped with a message when the `bench` extra is absent) and `onnx:default` (the default model
exported with noise inputs, on onnxruntime).
Batch-1 latencies of all models (and the bf16 autocast variants of paper-512 and GFPGAN) are
measured in interleaved rounds and reported as medians; ratios are medians of per-round ratios,
so load drift cancels.
"""

from __future__ import annotations

import dataclasses
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from facemend.bench import machine, memory
from facemend.bench import models as bm

ALL_MODELS = ("default", "paper-512", bm.PAPER_BILINEAR, "GFPGANv1Clean", "CodeFormer",
              "onnx:default")
QUICK_MODELS = ("default", "paper-512", "onnx:default")
BF16_MODELS = ("paper-512", "GFPGANv1Clean")
PARTS = ("roofline", "bf16", "train", "rss", "e2e", "video", "memory")


@dataclass(frozen=True)
class BenchOptions:
    """What to run; `quick` keeps a run under a minute (fewer repeats, smaller sweeps)."""

    quick: bool = False
    threads: int | None = None
    weights: str | None = None  # weights folder of `default`
    config: str | None = None  # config of `default` when there are no weights (tests: tiny)
    models: tuple[str, ...] | None = None  # None: ALL_MODELS (QUICK_MODELS with quick)
    skip: frozenset[str] = frozenset()  # parts of PARTS to leave out


def _log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def _entries(opts: BenchOptions, names: tuple[str, ...], tmp: Path,
             skipped: dict[str, str]) -> list[bm.Entry]:
    """Build every requested model (and bf16 variants); unavailable ones go to `skipped`."""
    from facemend.bench.peers import PEERS, PeerUnavailableError

    entries: list[bm.Entry] = []
    default_G = None
    for name in names:
        if name in bm.FACEMEND_MODELS:
            G, source = bm.build_facemend(name, opts.config, opts.weights)
            default_G = G if name == "default" else default_G
            entries.append(bm.facemend_entry(name, G, source))
            if name in BF16_MODELS and "bf16" not in opts.skip:
                entries.append(bm.facemend_entry(name, G, source, bf16=True))
        elif name in PEERS:
            try:
                peer = PEERS[name]()
            except PeerUnavailableError as e:
                skipped[name] = str(e)
                continue
            entries.append(bm.peer_entry(peer))
            if name in BF16_MODELS and "bf16" not in opts.skip:
                entries.append(bm.peer_entry(peer, bf16=True))
        elif name == "onnx:default":
            try:
                import onnx  # noqa: F401
                import onnxruntime  # noqa: F401
            except ImportError:
                skipped[name] = "onnx/onnxruntime not installed: pip install 'facemend[onnx]'"
                continue
            from facemend.export import export_onnx

            if default_G is None:
                default_G, _ = bm.build_facemend("default", opts.config, opts.weights)
            path = export_onnx(default_G, tmp / "default.onnx", noise="input")
            entries.append(bm.onnx_entry(path, bm.n_params(default_G)))
        else:
            raise ValueError(f"unknown model {name!r}; choose from {', '.join(ALL_MODELS)}")
    return entries


def _records(entries: list[bm.Entry], opts: BenchOptions, roof: dict, tmp: Path) -> list[dict]:
    """One JSON record per fp32 model, with its bf16 variant folded in."""
    by_name = {e.name: e for e in entries}
    refs = {e.H: e for e in entries if e.name in ("default", "paper-512")}
    refs.update({e.H: e for e in entries if e.name == "paper-512"})  # it wins a tie at 512
    records = []
    for e in entries:
        if e.name.endswith(" bf16"):
            continue
        _log(f"{e.name}: batch sweep")
        if e.name == "onnx:default" and "default" in by_name:
            e.gflops = by_name["default"].gflops  # the same graph
        small = e.H <= 128
        batches = ((1, 4, 16) if opts.quick else (1, 2, 4, 8, 16, 32)) if small else (
            (1,) if opts.quick else (1, 2, 4))
        sweep = bm.sweep_batches(e, batches, repeats=2 if small else 1)
        best = max(sweep, key=lambda b: sweep[b])
        ms1 = 1000 * statistics.median(e.times)
        g = e.gflops
        rec = {
            "name": e.name, "source": e.source, "input": e.H, "params": e.params,
            "gflops_per_face": round(g, 3) if g is not None else None,
            "ms_per_face_batch1": round(ms1, 2),
            "ms_per_face_batch1_runs": [round(1000 * t, 2) for t in e.times],
            "faces_per_s_best": round(sweep[best], 2), "best_batch": best,
            "faces_per_s_by_batch": {str(b): round(v, 2) for b, v in sorted(sweep.items())},
            "roofline_fraction": (round(g * sweep[best] / roof["matmul_fp32_gflops"], 3)
                                  if g is not None and roof.get("matmul_fp32_gflops") else None),
        }
        ref = by_name["default"] if e.name == "onnx:default" else refs.get(e.H)
        rec["ratio_vs_facemend"] = round(bm.median_ratio(e, ref), 3) if ref else None
        rec["ratio_reference"] = ref.name if ref else None
        variant = by_name.get(e.name + " bf16")
        if variant is not None:
            rec["bf16"] = {"ms_per_face_batch1": round(1000 * statistics.median(variant.times), 2),
                           "speedup_vs_fp32": round(1 / bm.median_ratio(variant, e), 3),
                           "how": "torch.autocast('cpu', bfloat16)"}
        rec["train_images_per_s"] = _train(e, opts)
        if "rss" not in opts.skip:
            onnx = str(tmp / "default.onnx") if e.name == "onnx:default" else None
            rec["peak_rss_mb"] = bm.peak_rss_child(e.name, torch.get_num_threads(), opts.config,
                                                   opts.weights, onnx)
        records.append(rec)
    return records


def _train(e: bm.Entry, opts: BenchOptions) -> float | None:
    """G+D training images/s for facemend torch models (None for peers, ONNX, skipped)."""
    if "train" in opts.skip or e.name not in ("default", "paper-512"):
        return None
    if e.name == "paper-512" and opts.quick:
        return None
    _log(f"{e.name}: training step")
    batch, steps = (8, 2 if opts.quick else 3) if e.H <= 128 else (2, 1)
    return round(bm.train_images_per_s(e.module.cfg, batch, steps), 3)


def _restore_e2e(entries: list[bm.Entry], repeats: int = 3) -> dict:
    """Per example photo, the `default` model's whole-photo restore (detect/align/restore/paste
    ms, best of `repeats`) beside the plain pipeline in the same run: full-resolution HOG
    pyramid (smallest_face=0), square paste mask, the model's output replacing each face
    (detail=False). Faces found by each are reported, and the speed-up."""
    from facemend.inference.detect import DetectOptions, hog_detector, shape_predictor
    from facemend.inference.restore import restore_photo
    from facemend.io import list_images, load_rgb

    entry = next((e for e in entries if e.name == "default"), None)
    if entry is None:
        return {"skipped": "the default model is not among the benchmarked models"}
    hog_detector(), shape_predictor(5), shape_predictor(68)  # load detector files before timing
    plain = {"detect": DetectOptions(smallest_face=0.0), "detail": False,
             "face_shaped_mask": False}
    out = {}
    for path in list_images(memory.EXAMPLES):
        img = load_rgb(path)
        best: dict[str, tuple[float, object]] = {}
        for _ in range(repeats):
            for name, kw in (("plain", plain), ("default", {})):
                t = time.perf_counter()
                res = restore_photo(img, entry.call, entry.H, **kw)
                total = time.perf_counter() - t
                if name not in best or total < best[name][0]:
                    best[name] = (total, res)
        (t_new, res), (t_old, old) = best["default"], best["plain"]
        out[path.name] = {"size": f"{img.shape[1]}x{img.shape[0]}", "faces": len(res.faces),
                          **{f"{k}_ms": round(1000 * v, 1) for k, v in res.timings.items()},
                          "total_ms": round(1000 * t_new, 1),
                          "plain_total_ms": round(1000 * t_old, 1),
                          "plain_detect_ms": round(1000 * old.timings["detect"], 1),
                          "plain_faces": len(old.faces), "speedup": round(t_old / t_new, 2)}
    return out


VIDEO_CLIPS = {"1 face": "obama1.jpg", "3 faces": "obama_and_biden.jpg"}


def _video(entries: list[bm.Entry], frames: int, size: tuple[int, int] = (1280, 720)) -> dict:
    """Frames/s of `facemend restore CLIP` with the `default` model on synthetic 720p clips
    (an example photo panned, zoomed and re-compressed: bench/clips.py), one face and three,
    beside the per-face time of the photo pipeline on the same frames restored one by one."""
    from facemend.bench.clips import clip_frames, write_clip
    from facemend.inference.api import FaceRestorer
    from facemend.inference.video_restore import VideoOptions, restore_video
    from facemend.io import load_rgb

    entry = next((e for e in entries if e.name == "default"), None)
    if entry is None or entry.module is None:
        return {"skipped": "the default torch model is not among the benchmarked models"}
    restorer = FaceRestorer(model=entry.module, identity=False)
    out = {}
    with tempfile.TemporaryDirectory(prefix="facemend-bench-video-") as tmp:
        for label, photo in VIDEO_CLIPS.items():
            clip = clip_frames(load_rgb(memory.EXAMPLES / photo), frames, size)
            src = write_clip(Path(tmp) / f"{Path(photo).stem}.mp4", clip)
            t = time.perf_counter()
            res = restore_video(restorer, src, Path(tmp) / "out.mp4", VideoOptions(),
                                progress=False)
            video_s = time.perf_counter() - t
            t = time.perf_counter()
            faces = sum(len(restorer.enhance(f).faces) for f in clip[:4])
            photo_s = (time.perf_counter() - t) / 4
            out[label] = {"size": f"{size[0]}x{size[1]}", "frames": res.frames,
                          "tracks": res.tracks, "frames_per_s": round(res.frames / video_s, 2),
                          "photo_ms_per_frame": round(1000 * photo_s, 1),
                          "photo_ms_per_face": round(4000 * photo_s / max(faces, 1), 1)}
    return out


def run_bench(opts: BenchOptions, log: Callable[[str], None] = _log) -> dict:
    """Run the benchmark and return the JSON-ready result."""
    if opts.threads is not None:
        torch.set_num_threads(opts.threads)
    if opts.quick:  # bf16 variants of the 512 models would double the quick run's time
        opts = dataclasses.replace(opts, skip=opts.skip | {"bf16"})
    names = opts.models or (QUICK_MODELS if opts.quick else ALL_MODELS)
    t0 = time.perf_counter()
    result: dict = {"machine": machine.machine_info(), "quick": opts.quick,
                    "flop_convention": bm.FLOP_CONVENTION}
    roof = {} if "roofline" in opts.skip else machine.roofline(opts.quick)
    result["roofline"] = roof
    skipped: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="facemend-bench-") as tmp:
        entries = _entries(opts, names, Path(tmp), skipped)
        repeats = 1 if opts.quick else 5
        log(f"FLOPs and interleaved batch-1 timing: {len(entries)} entries x {repeats} rounds")
        bm.time_interleaved(entries, repeats)
        result["models"] = _records(entries, opts, roof, Path(tmp))
    result["skipped_models"] = skipped
    if "e2e" not in opts.skip:
        log("end-to-end restore of examples/photos")
        result["restore_e2e"] = _restore_e2e(entries)
    if "video" not in opts.skip:
        log("video: 720p clips with one face and with three")
        result["video"] = _video(entries, 8 if opts.quick else 48)
    if "memory" not in opts.skip:
        model = "default" if opts.quick else "paper-512"
        log(f"memory: 6000x4000 photo, 30 faces, {model} (child process)")
        result["memory_6000x4000_30faces"] = memory.restore_in_child(
            model, torch.get_num_threads(), config=opts.config, weights=opts.weights)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    return result
