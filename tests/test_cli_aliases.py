"""GFPGAN / CodeFormer spellings of `facemend restore`, and the restore/export/embed frictions."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facemend.cli import build_parser, main
from facemend.commands.compat import resolve_compat

REPO = Path(__file__).resolve().parents[1]
PHOTO = REPO / "examples" / "photos" / "john2.jpg"  # one face, 630x374


def parsed(*argv: str):
    args = build_parser().parse_args(["restore", *argv])
    notes = resolve_compat(args)
    return args, notes


def restore(*args: str) -> int:
    return main(["restore", *args, "--no-progress", "--threads", "1"])


def test_gfpgan_and_codeformer_spellings_mean_the_same_as_ours() -> None:
    ours, notes = parsed("a.jpg", "b", "-o", "res", "--upscale", "2", "--only-center-face",
                         "--aligned", "--noise-scale", "0.25", "--ext", "png")
    assert notes == []
    gfpgan, _ = parsed("-i", "a.jpg", "b", "-o", "res", "-s", "2", "--only_center_face",
                       "--aligned", "-w", "0.75", "--ext", "png")
    codeformer, _ = parsed("--input_path", "a.jpg", "-i", "b", "--output_path", "res",
                           "--upscale", "2", "--only_center_face", "--has_aligned",
                           "--fidelity_weight", "0.75", "--ext", "png")
    keys = ("inputs", "output", "upscale", "only_center_face", "aligned", "noise_scale", "ext")
    for args in (gfpgan, codeformer):
        assert {k: getattr(args, k) for k in keys} == {k: getattr(ours, k) for k in keys}
    assert parsed("x", "--weight", "1")[0].noise_scale == 0.0  # w = 1: most faithful
    assert parsed("x", "-w", "0")[0].noise_scale == 1.0
    assert parsed("x")[0].noise_scale is None  # the backend's default decides
    assert parsed("x", "--detection_model", "dlib")[0].detector == "cnn"


def test_flags_without_an_equivalent_are_explained_not_rejected() -> None:
    args, notes = parsed("x", "-v", "1.3", "--bg_upsampler", "realesrgan", "--bg_tile", "400",
                         "--face_upsample", "--detection_model", "retinaface_resnet50",
                         "--draw_box")
    flags = ["-v 1.3", "realesrgan", "--bg_tile", "--face_upsample", "retinaface_resnet50",
             "--draw_box"]
    assert len(notes) == len(flags)
    for flag, note in zip(flags, notes, strict=True):
        assert flag in note and "\n" not in note
    assert args.detector == "hog"
    assert parsed("x", "--bg_upsampler", "None")[1] == []  # GFPGAN/CodeFormer's plain resize


@pytest.mark.parametrize("argv, message", [
    (["x", "-w", "0.5", "--noise-scale", "1"], "give one of them"),
    (["x", "-w", "1.5"], "must be in [0, 1]"),
    (["x", "--identity-guard", "0.8", "--no-identity"], "--no-identity"),
    (["x", "--bg_upsampler", "esrgan4x"], "choose none, lanczos or realesrgan"),
    (["x", "--suffix", "a/b"], "without slashes"),
    ([], "no input given"),
])
def test_contradictions_are_refused_in_one_line(argv: list[str], message: str,
                                                capsys: pytest.CaptureFixture) -> None:
    assert restore(*argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err


def test_gfpgan_command_line_runs(weights: Path, tmp_path: Path,
                                  capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "res"
    rc = restore("-i", str(PHOTO), "-o", str(out), "-v", "1.3", "-s", "2", "--bg_upsampler",
                 "realesrgan", "--suffix", "gfp", "-w", "0.5", "--weights", str(weights),
                 "--no-identity")
    assert rc == 0
    err = capsys.readouterr().err
    assert "note: -v 1.3" in err and "note: --bg_upsampler realesrgan" in err
    assert [p.name for p in (out / "restored_faces").iterdir()] == ["john2_00_gfp.png"]
    assert [p.name for p in (out / "cropped_faces").iterdir()] == ["john2_00.png"]
    img = Image.open(out / "restored_imgs" / "john2_gfp.jpg")
    assert img.size == (2 * 630, 2 * 374)
    report = json.loads((out / "report.json").read_text())
    assert report["settings"]["noise_scale"] == 0.5 and report["settings"]["upscale"] == 2


def test_identity_guard_with_no_identity_is_refused_before_any_photo(
        weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rc = restore(str(PHOTO), "-o", str(tmp_path / "o"), "--weights", str(weights),
                 "--identity-guard", "0.8", "--no-identity")
    assert rc == 2 and not (tmp_path / "o").exists()
    assert "internal error" not in capsys.readouterr().out


def test_face_index_beyond_the_faces_found_says_so(weights: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "o"
    rc = restore(str(PHOTO), "-o", str(out), "--weights", str(weights), "--no-identity",
                 "--face-index", "9")
    assert rc == 0
    err = capsys.readouterr().err
    assert f"{PHOTO}: no face number 9" in err
    entry = json.loads((out / "report.json").read_text())["files"][0]
    assert entry["faces"] == [] and "no face number 9" in entry["note"]


def test_folder_of_sub_folders_hints_at_recursive(tmp_path: Path, weights: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    src = tmp_path / "albums"
    (src / "2023").mkdir(parents=True)
    (src / "empty").mkdir()
    shutil.copy(PHOTO, src / "2023" / "a.jpg")
    rc = restore(str(src), "-o", str(tmp_path / "o"), "--weights", str(weights))
    captured = capsys.readouterr()
    assert rc == 1
    assert f"{src}: no image directly in this folder; its sub-folders hold 1 (add --recursive)" \
        in captured.err
    assert "1 input(s): 0 restored (0 faces), 1 failed" in captured.out
    rc = restore(str(src / "empty"), "-o", str(tmp_path / "o"), "--weights", str(weights))
    assert rc == 1 and "no image file in this folder" in capsys.readouterr().err


def test_onnx_export_then_restore_without_noise_flag(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    onnx = tmp_path / "g.onnx"
    assert main(["export", "--onnx", str(onnx), "--config",
                 str(REPO / "configs" / "tiny-32.yaml")]) == 0
    assert "restore with: facemend restore --backend onnx" in capsys.readouterr().out
    out = tmp_path / "o"
    rc = restore(str(PHOTO), "-o", str(out), "--backend", "onnx", "--onnx", str(onnx),
                 "--no-identity")
    assert rc == 0
    report = json.loads((out / "report.json").read_text())
    assert report["settings"]["noise_scale"] == 0.0 and len(report["files"][0]["faces"]) == 1
    rc = restore(str(PHOTO), "-o", str(out), "--backend", "onnx", "--onnx", str(onnx),
                 "--noise-scale", "1")
    captured = capsys.readouterr()
    assert rc == 2 and "Traceback" not in captured.out + captured.err
    assert "--noise zero" in captured.err and "--noise input" in captured.err


def test_embed_without_out_prints_json(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    noface = tmp_path / "noface.png"
    Image.fromarray(np.full((60, 80, 3), 128, np.uint8)).save(noface)
    rc = main(["embed", str(PHOTO), str(noface)])
    captured = capsys.readouterr()
    assert rc == 1  # one image without a face
    doc = json.loads(captured.out)
    assert [e["file"] for e in doc["embeddings"]] == [str(PHOTO)]
    emb = np.array(doc["embeddings"][0]["embedding"])
    assert emb.shape == (128,) and 0.5 < np.linalg.norm(emb) < 1.5
    assert doc["failed"][0]["file"] == str(noface) and "no face found" in captured.err
