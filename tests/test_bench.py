"""`facemend bench`: FLOP convention, the --quick run's JSON, peers, the memory child."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from facemend.bench import memory
from facemend.bench.models import count_gflops
from facemend.cli import main

REPO = Path(__file__).resolve().parents[1]
TINY = str(REPO / "configs" / "tiny-32.yaml")


def test_flop_counter_counts_multiply_add_as_two() -> None:
    conv = torch.nn.Conv2d(3, 8, 3, padding=1)
    x = torch.zeros(1, 3, 16, 16)
    # per output element: 3 * 3 * 3 multiply-adds; 8 * 16 * 16 outputs; bias not counted
    assert count_gflops(conv, x) * 1e9 == pytest.approx(2 * (3 * 3 * 3) * (8 * 16 * 16))
    a, b = torch.zeros(4, 5), torch.zeros(5, 6)
    assert count_gflops(lambda t: t @ b, a) * 1e9 == pytest.approx(2 * 4 * 5 * 6)


def test_bench_quick_tiny_writes_json_and_markdown(tmp_path: Path) -> None:
    # In a child process: the run's OpenCV thread pool must not be inherited by the forked
    # DataLoader workers of later tests (OpenCV's pool is not fork-safe).
    out, md = tmp_path / "bench.json", tmp_path / "bench.md"
    cmd = [sys.executable, "-m", "facemend", "bench", "--quick", "--threads", "1", "--config",
           TINY, "--weights", str(tmp_path / "no-weights"), "--models", "default,onnx:default",
           "--skip", "memory", "--out", str(out), "--md", str(md)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    r = json.loads(out.read_text())
    assert {"machine", "roofline", "models", "restore_e2e"} <= set(r)
    assert r["machine"]["threads"] == 1 and r["machine"]["cores"] >= 1
    assert r["roofline"]["matmul_fp32_gflops"] > 0 and r["roofline"]["conv3x3_bf16_gflops"] > 0
    names = [m["name"] for m in r["models"]]
    assert names == ["default", "onnx:default"]
    default, onnx = r["models"]
    assert "random init of tiny-32.yaml" in default["source"]
    for m in r["models"]:
        assert m["params"] > 0 and m["gflops_per_face"] > 0 and m["ms_per_face_batch1"] > 0
        assert m["faces_per_s_best"] > 0 and m["best_batch"] in (1, 4, 16)
        assert m["peak_rss_mb"] > 50 and 0 < m["roofline_fraction"] < 2
    assert default["ratio_vs_facemend"] == 1.0 and default["train_images_per_s"] > 0
    assert onnx["gflops_per_face"] == default["gflops_per_face"] and onnx["ratio_vs_facemend"] > 0
    photo = r["restore_e2e"]["kit_with_rose.jpg"]
    assert photo["faces"] == 2 and {"detect_ms", "align_ms", "restore_ms", "paste_ms"} <= set(photo)
    assert photo["plain_faces"] == 2 and photo["speedup"] > 0
    clip = r["video"]["3 faces"]
    assert clip["frames"] == 8 and clip["size"] == "1280x720" and clip["frames_per_s"] > 0
    assert clip["tracks"] >= 1 and clip["photo_ms_per_face"] > 0
    assert "| default |" in md.read_text()


def test_bench_rejects_unknown_parts_and_models(tmp_path: Path) -> None:
    assert main(["bench", "--skip", "nothing", "--out", str(tmp_path / "b.json")]) == 2
    assert main(["bench", "--quick", "--models", "nope", "--skip",
                 "roofline,train,rss,e2e,memory", "--out", str(tmp_path / "b.json")]) == 2


def test_peers_load_without_their_package_init() -> None:
    if importlib.util.find_spec("gfpgan") is None or importlib.util.find_spec("codeformer") is None:
        pytest.skip("bench extra (gfpgan, codeformer-pip) not installed")
    from facemend.bench.peers import load_codeformer, load_gfpgan

    for load, millions in ((load_gfpgan, 86.4), (load_codeformer, 94.1)):
        peer = load()
        n = sum(p.numel() for p in peer.module.parameters())
        assert n / 1e6 == pytest.approx(millions, abs=0.1)
    assert not [m for m in sys.modules if m.startswith(("basicsr", "gfpgan", "codeformer"))]


def test_memory_child_small_photo() -> None:
    r = memory.restore_in_child("default", 1, width=1200, height=800, faces=4, config=TINY,
                                weights="/nonexistent")
    assert r["faces_restored"] == 4 and r["resolution"] == 32, r
    assert 50 < r["peak_rss_mb"] < 4096


@pytest.mark.slow
def test_memory_6000x4000_30_faces_at_512_within_4gb() -> None:
    """Slow (minutes on one core); `facemend bench` reports the same measurement."""
    r = memory.restore_in_child("paper-512", torch.get_num_threads())
    assert r["faces_restored"] == 30, r
    assert r["peak_rss_mb"] < 4096, r


def test_bench_names_project_weights_relative_and_others_as_given(tmp_path: Path) -> None:
    """Reports name the shipped weights `weights/default`, not this machine's absolute path."""
    import shutil

    from facemend.bench.models import build_facemend
    from facemend.models.pretrained import DEFAULT_WEIGHTS

    _, source = build_facemend("default")
    assert source == "weights weights/default"
    outside = tmp_path / "mine"
    shutil.copytree(DEFAULT_WEIGHTS, outside)
    _, source = build_facemend("default", weights=str(outside))
    assert source == f"weights {outside.resolve()}"
