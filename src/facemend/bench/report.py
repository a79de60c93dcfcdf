"""Markdown tables of a `facemend bench` result."""

from __future__ import annotations


def _fmt(v: object, digits: int = 1) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    return str(v)


def to_markdown(result: dict) -> str:
    """The benchmark result as Markdown: machine, roofline, models, e2e, memory."""
    m = result["machine"]
    lines = [
        "# facemend bench" + (" (--quick)" if result.get("quick") else ""),
        "",
        f"{m['cpu']}, {m['cores']} cores, flags {' '.join(m['flags']) or '-'}; torch "
        f"{m['torch']} ({m['torch_cpu_capability']}), {m['threads']} threads; onnxruntime "
        f"{m['onnxruntime'] or '-'}. FLOPs: {result['flop_convention']}.",
        "",
    ]
    roof = result.get("roofline") or {}
    if roof:
        lines += ["| roofline GFLOP/s | fp32 | bf16 |", "|---|---:|---:|",
                  f"| matmul | {_fmt(roof['matmul_fp32_gflops'])} | "
                  f"{_fmt(roof['matmul_bf16_gflops'])} |",
                  f"| conv 3x3 | {_fmt(roof['conv3x3_fp32_gflops'])} | "
                  f"{_fmt(roof['conv3x3_bf16_gflops'])} |", ""]
    lines += [
        "| model | input | params (M) | GFLOPs/face | ms/face (B=1) | best faces/s (batch) "
        "| bf16 ms/face (speed-up) | peak RSS (MB) | roofline | train img/s | vs facemend |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["models"]:
        bf = r.get("bf16")
        bf_txt = f"{_fmt(bf['ms_per_face_batch1'])} ({bf['speedup_vs_fp32']:.2f}x)" if bf else "-"
        roof_txt = f"{100 * r['roofline_fraction']:.0f}%" if r["roofline_fraction"] else "-"
        ratio = (f"{r['ratio_vs_facemend']:.2f}x {r['ratio_reference']}"
                 if r.get("ratio_vs_facemend") is not None else "-")
        lines.append(
            f"| {r['name']} | {r['input']} | {r['params'] / 1e6:.2f} | "
            f"{_fmt(r['gflops_per_face'], 2)} | {_fmt(r['ms_per_face_batch1'])} | "
            f"{_fmt(r['faces_per_s_best'], 2)} ({r['best_batch']}) | {bf_txt} | "
            f"{_fmt(r.get('peak_rss_mb'), 0)} | {roof_txt} | "
            f"{_fmt(r.get('train_images_per_s'), 2)} | {ratio} |")
    lines.append("")
    lines += [f"- `{r['name']}`: {r['source']}" for r in result["models"]]
    lines += [f"- `{k}` skipped: {v}" for k, v in result.get("skipped_models", {}).items()]
    lines.append("- ms/face (B=1): median of interleaved rounds; 'vs facemend': median of "
                 "per-round time ratios against the facemend model of the same input size.")
    e2e = result.get("restore_e2e")
    if e2e and "skipped" not in e2e:
        lines += ["", "| photo | size | faces | detect ms | align ms | restore ms | paste ms "
                  "| total ms | plain pipeline: total ms (detect ms, faces) | speed-up |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for name, t in e2e.items():
            plain = (f"{t['plain_total_ms']} ({t['plain_detect_ms']}, {t['plain_faces']})"
                     if "plain_total_ms" in t else "-")
            lines.append(f"| {name} | {t['size']} | {t['faces']} | {t['detect_ms']} | "
                         f"{t['align_ms']} | {t['restore_ms']} | {t['paste_ms']} | "
                         f"{t['total_ms']} | {plain} | {t.get('speedup', '-')} |")
        lines.append("- restore's default pipeline (detection on the reduced copy "
                     "`detection_plan` chooses, face-shaped masks, faces at their own size) "
                     "beside the plain one (full HOG pyramid, square mask, the model's output "
                     "at its size), each the best of 3, alternating, in the same run.")
    video = result.get("video")
    if video and "skipped" not in video:
        lines += ["", "| clip | size | frames | tracks | frames/s | photo pipeline ms/frame "
                  "| photo pipeline ms/face |", "|---|---|---:|---:|---:|---:|---:|"]
        for label, v in video.items():
            lines.append(f"| {label} | {v['size']} | {v['frames']} | {v['tracks']} | "
                         f"{v['frames_per_s']} | {v['photo_ms_per_frame']} | "
                         f"{v['photo_ms_per_face']} |")
        lines.append("- `facemend restore CLIP` (tracking, detection every 5th frame) on "
                     "synthetic clips; the photo pipeline restores 4 of the same frames alone.")
    mem = result.get("memory_6000x4000_30faces")
    if mem:
        lines.append("")
        if "error" in mem:
            lines.append(f"Memory test failed: {mem['error']}")
        else:
            lines.append(
                f"Memory: {mem['photo']} photo, {mem['faces_restored']}/{mem['faces_placed']} "
                f"faces restored with `{mem['model']}` ({mem['resolution']} px, batch "
                f"{mem['batch_size']}): peak RSS {mem['peak_rss_mb']:.0f} MB (limit "
                f"{mem['limit_mb']} MB: {'ok' if mem['within_limit'] else 'EXCEEDED'}), "
                f"{mem['seconds']} s.")
    lines += ["", f"Total benchmark time: {result['seconds']} s.", ""]
    return "\n".join(lines)
