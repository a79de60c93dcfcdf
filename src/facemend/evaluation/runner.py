"""`evaluate`: run one method on the cached test sets and score it (§5, Table 1, Fig. 7).

Per task: PSNR / SSIM (mean over images), LPIPS (mean; null with a reason when its weights are not
on this machine), FID vs the HQ set (Inception pool3; null with a reason without weights),
FD-dlib (Frechet distance in the face-embedding space), iPrecision / iRecall (eq. 11-12, k from
EvalConfig) and the curve over k = 1..5 (Fig. 7a). Non-finite numbers are written as the strings
"inf" / "nan" so that results.json stays strict JSON; keys are sorted and nothing but the
`timestamp` field depends on when or where the run happened.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from facemend.config import DegradationConfig, EvalConfig, to_dict
from facemend.evaluation.features import SAME_IDENTITY_THRESHOLD, Embedder, face_embedder
from facemend.evaluation.methods import Restorer, make_restorer
from facemend.evaluation.testsets import SR_FACTORS, build_testset, load_identities
from facemend.io import atomic_write_bytes, save_rgb

CURVE_KS = (1, 2, 3, 4, 5)
OUTPUTS_DIR = "outputs"  # with save_outputs: RUN_DIR/outputs/TASK/NAME.png


def _json_safe(v: Any) -> Any:
    """Floats that JSON cannot hold become 'inf' / '-inf' / 'nan'; containers recursively."""
    if isinstance(v, float) and not math.isfinite(v):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
    if isinstance(v, dict):
        return {str(k): _json_safe(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_json_safe(x) for x in v]
    return v


def _versions() -> dict[str, str]:
    import torch

    import facemend

    return {"facemend": facemend.__version__, "numpy": np.__version__, "torch": torch.__version__}


def _try(load: Any) -> tuple[Any, str | None]:
    """(value, None) or (None, one-line reason) for an optional weights loader."""
    try:
        return load(), None
    except (FileNotFoundError, ValueError, ImportError) as e:
        return None, str(e).splitlines()[0]


def evaluate(
    data: str | Path,
    out: str | Path,
    method: str | Restorer = "identity",
    *,
    identities: str | Path | None = None,
    weights: str | Path | None = None,
    cfg: EvalConfig = EvalConfig(),
    cache: str | Path | None = None,
    limit: int | None = None,
    embedder: Embedder | None = None,
    embedder_name: str | None = None,
    lpips_net: str = "vgg",
    lpips_dir: str | Path | None = None,
    fid_dir: str | Path | None = None,
    method_name: str | None = None,
    progress: bool = True,
    save_outputs: bool = False,
) -> dict[str, Any]:
    """Score a method on BFR / SR x8 / SR x16 (Table 1 + eq. 11-12) and write the run folder."""
    # save_outputs: also write every restored image as out/outputs/TASK/NAME.png (used by
    # `facemend study create`: the same input restored by different methods).
    import torch
    from tqdm import tqdm

    from facemend.evaluation import report
    from facemend.metrics.detail import fine_detail_ratio
    from facemend.metrics.fid import fid_from_features, load_inception
    from facemend.metrics.identity import ipr_curve
    from facemend.metrics.lpips import load_lpips
    from facemend.metrics.psnr_ssim import mean_psnr, psnr, ssim

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ts = build_testset(data, cache or out / "testset", cfg.resolution, cfg.tasks, cfg.seed, limit,
                       DegradationConfig(), progress)
    ids = load_identities(identities, data, ts) if identities else None
    if callable(method):
        restorer, method_desc = method, "custom callable"
        name = method_name or getattr(method, "__name__", "custom")
    else:
        restorer, method_desc = make_restorer(method, weights, cfg.batch_size, cfg.noise_scale,
                                             cfg.seed)
        name = method_name or method
    same_threshold = None  # a custom embedder has no known same-person distance
    if embedder is None:
        embedder, embedder_name = face_embedder(cfg.feature_extractor)
        same_threshold = SAME_IDENTITY_THRESHOLD.get(cfg.feature_extractor)
    notes: dict[str, str] = {}
    lp, why = _try(lambda: load_lpips(lpips_net, lpips_dir))  # type: ignore[arg-type]
    if why:
        notes["lpips"] = why
    inception, why = _try(lambda: load_inception(fid_dir))
    if why:
        notes["fid"] = why
    if ids is None:
        notes["iprecision"] = notes["irecall"] = (
            "no identity labels (--identities CSV): iPrecision/iRecall skipped"
        )
    n = len(ts.names)
    ks = [k for k in CURVE_KS if k < n]
    if cfg.k >= n:
        raise ValueError(f"eval.k={cfg.k} needs more than {cfg.k} test images, got {n}")

    def inception_feats(images: list[np.ndarray]) -> np.ndarray:
        x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        with torch.no_grad():
            return inception(x).double().numpy()  # (B, 2048)

    batches = [list(range(s, min(s + cfg.batch_size, n))) for s in range(0, n, cfg.batch_size)]
    real_emb, real_inc = [], []
    for idx in tqdm(batches, desc="real features", disable=not progress):
        hq = ts.load("hq", idx)
        real_emb.append(embedder(hq))
        if inception is not None:
            real_inc.append(inception_feats(hq))
    e_real = np.concatenate(real_emb)  # (N, D)

    tasks: dict[str, Any] = {}
    for task in ts.tasks:
        kind, small_kind = ts.input_kinds(task)
        ps, ss, lps, embs, incs, grid, details = [], [], [], [], [], [], []
        for idx in tqdm(batches, desc=f"{name} {task}", disable=not progress):
            inputs, smalls = ts.load(kind, idx), ts.load(small_kind, idx)
            hq = ts.load("hq", idx)
            outputs = restorer(task, inputs, smalls, [ts.names[i] for i in idx])
            if len(outputs) != len(idx) or any(
                o.shape != h.shape or o.dtype != np.uint8 for o, h in zip(outputs, hq, strict=True)
            ):
                raise ValueError(f"{name} returned images of the wrong count, shape or dtype")
            ps += psnr(outputs, hq).tolist()
            ss += ssim(outputs, hq).tolist()
            details += fine_detail_ratio(list(outputs), list(hq))
            if lp is not None:
                a = torch.from_numpy(np.stack(outputs)).permute(0, 3, 1, 2).float() / 127.5 - 1
                b = torch.from_numpy(np.stack(hq)).permute(0, 3, 1, 2).float() / 127.5 - 1
                with torch.no_grad():
                    lps += lp(a, b).tolist()  # (B,)
            embs.append(embedder(outputs))
            if inception is not None:
                incs.append(inception_feats(outputs))
            for j, i in enumerate(idx):
                if save_outputs:
                    save_rgb(out / OUTPUTS_DIR / task / ts.names[i], outputs[j])
                if i < cfg.grid_images:
                    grid.append((smalls[j] if task in SR_FACTORS else inputs[j], outputs[j], hq[j]))
        e_out = np.concatenate(embs)  # (N, D)
        curve = ipr_curve(e_real, e_out, ids, ks) if ids is not None else {}
        ip_ir = ipr_curve(e_real, e_out, ids, [cfg.k])[cfg.k] if ids is not None else None
        tasks[task] = {
            "psnr": mean_psnr(ps),
            "ssim": float(np.mean(ss)),
            "lpips": float(np.mean(lps)) if lp is not None else None,
            "fid": fid_from_features(np.concatenate(real_inc), np.concatenate(incs))
            if inception is not None else None,
            "fd_dlib": fid_from_features(e_real, e_out),
            "detail": float(np.median(details)),
            "id_dist": float(np.linalg.norm(e_out - e_real, axis=1).mean()),
            "id_same": float((np.linalg.norm(e_out - e_real, axis=1) < same_threshold).mean())
            if same_threshold is not None else None,
            "iprecision": ip_ir[0] if ip_ir else None,
            "irecall": ip_ir[1] if ip_ir else None,
            "ipr_vs_k": {str(k): {"iprecision": p, "irecall": r} for k, (p, r) in curve.items()},
        }
        report.save_grid(out / f"grid_{task}.png", grid)

    results = {
        "method": name,
        "tasks": tasks,
        "notes": notes,
        "n_images": n,
        "timestamp": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "protocol": {
            "data": str(Path(data)),
            "identities": str(identities) if identities else None,
            "resolution": cfg.resolution,
            "seed": cfg.seed,
            "tasks": list(cfg.tasks),
            "k": cfg.k,
            "ks_curve": ks,
            "method": method_desc,
            "weights": str(weights) if weights else None,
            "hq_resize": "Pillow LANCZOS to resolution",
            "sr_inputs": "Pillow BICUBIC (antialiased) down by 8/16, Pillow BICUBIC back up",
            "bfr_degradation": "eq. 13, rng = np.random.default_rng([seed, index])",
            "degradation_ranges": to_dict(DegradationConfig()),
            "psnr_ssim": "8-bit RGB, full frame, data range 255, SSIM gaussian sigma 1.5, "
            "population covariance, per channel then averaged (= scikit-image); mean over images",
            "lpips": f"LPIPS v0.1 {lpips_net}" if lp is not None else None,
            "fid": "pytorch-fid Inception-v3 pool3 vs HQ set" if inception is not None else None,
            "feature_extractor": embedder_name or "custom",
            "fd_dlib": "Frechet distance of face embeddings, restored vs HQ",
            "id_dist": "mean Euclidean distance of each restored face's embedding to its ground "
            "truth's",
            "id_same": f"fraction of faces whose distance is below {same_threshold} (the "
            f"extractor's same-person threshold)" if same_threshold is not None
            else "not computed: no same-person threshold for this extractor",
            "detail": "median over images of the fine-detail energy (grey image minus its "
            "Gaussian blur, sigma 1 px) of the output over the ground truth's; 1 = as detailed",
            "versions": _versions(),
        },
    }
    if save_outputs:  # only then, so that runs without it stay byte-identical
        results["outputs"] = {"dir": OUTPUTS_DIR, "testset": str(ts.root)}
    text = json.dumps(_json_safe(results), indent=2, sort_keys=True, allow_nan=False) + "\n"
    atomic_write_bytes(out / "results.json", text.encode("utf-8"))
    atomic_write_bytes(out / "results.md", report.run_markdown([results]).encode("utf-8"))
    report.plot_ipr_vs_k([results], out / "fig7a.png")
    report.plot_precision_recall([results], out / "fig7b.png")
    return results
