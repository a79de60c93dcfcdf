"""`facemend restore` under hostile options and faults: one line on stderr, the right exit code,
a report.json that is strict JSON, nothing done before the options and the output are checked."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image, features

from conftest import tiny_generator
from facemend.cli import main
from facemend.models.generator import Generator
from facemend.models.pretrained import save_pretrained

REPO = Path(__file__).resolve().parents[1]
PHOTO = REPO / "examples" / "photos" / "john2.jpg"  # one face


def restore(*args: str) -> int:
    return main(["restore", *args, "--no-progress", "--threads", "1", "--no-identity"])


def strict_json(path: Path) -> dict:
    """report.json parsed as strict JSON (NaN / Infinity refused)."""
    def refuse(token: str) -> None:
        raise ValueError(f"{path}: {token} is not JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


def test_errors_and_notes_go_to_stderr_and_stdout_keeps_the_summary(
        weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(PHOTO, src / "face.jpg")
    (src / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    rc = restore(str(src), str(tmp_path / "nope.jpg"), "-o", str(tmp_path / "out"),
                 "--weights", str(weights))
    assert rc == 1
    captured = capsys.readouterr()
    assert captured.out.splitlines() == [
        f"3 input(s): 1 restored (1 faces), 2 failed; results in {tmp_path / 'out'}"]
    err = captured.err.splitlines()
    assert len(err) == 2
    assert err[0].startswith(f"{tmp_path / 'nope.jpg'}: no such file")
    assert err[1].startswith(f"{src / 'corrupt.png'}: ")


def test_a_file_name_with_a_newline_stays_one_whole_line(
        weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    src = tmp_path / "in"
    src.mkdir()
    (src / "bad\nname.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (src / "tab\there.png").write_bytes(b"")
    assert restore(str(src), "-o", str(tmp_path / "out"), "--weights", str(weights)) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2
    head = f"{src}/bad\\nname.jpg: "
    assert err[0].startswith(head) and len(err[0]) > len(head)
    assert err[1] == f"{src}/tab\\there.png: empty file (0 bytes)"
    report = strict_json(tmp_path / "out" / "report.json")
    assert {Path(f["file"]).name for f in report["files"]} == {"bad\nname.jpg", "tab\there.png"}


def test_avif_is_treated_alike_named_or_found_in_a_folder(
        weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    src = tmp_path / "in"
    src.mkdir()
    face = Image.open(PHOTO).convert("RGB")
    if features.check("avif"):
        face.save(src / "face.avif")
    else:  # a Pillow without AVIF: the file must then be refused the same way both times
        (src / "face.avif").write_bytes(b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1")
    rc_dir = restore(str(src), "-o", str(tmp_path / "a"), "--weights", str(weights))
    err_dir = capsys.readouterr().err
    rc_file = restore(str(src / "face.avif"), "-o", str(tmp_path / "b"), "--weights",
                      str(weights))
    err_file = capsys.readouterr().err
    assert rc_dir == rc_file and err_dir == err_file
    if features.check("avif"):
        assert rc_dir == 0
        for out in ("a", "b"):
            assert [p.name for p in (tmp_path / out / "restored_imgs").iterdir()] == ["face.png"]
    else:
        assert rc_dir == 1 and err_dir.count("face.avif") == 1


def nan_model() -> Generator:
    torch.manual_seed(0)
    G = tiny_generator()
    with torch.no_grad():
        next(iter(G.parameters())).view(-1)[0] = float("nan")
    return G


def test_weights_holding_nan_are_refused_at_load(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture) -> None:
    save_pretrained(nan_model(), tmp_path / "w")
    rc = restore(str(PHOTO), "-o", str(tmp_path / "out"), "--weights", str(tmp_path / "w"))
    assert rc == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1
    assert "model.safetensors: tensor" in err[0] and "NaN or infinite" in err[0]
    assert not (tmp_path / "out" / "restored_imgs").exists()


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_a_non_finite_noise_scale_is_refused(weights: Path, tmp_path: Path, value: str,
                                             capsys: pytest.CaptureFixture) -> None:
    rc = restore(str(PHOTO), "-o", str(tmp_path / "out"), "--weights", str(weights),
                 "--noise-scale", value)
    assert rc == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and f"noise_scale={value}: must be a finite number" in err[0]


def test_a_non_finite_model_output_is_an_error_for_that_photo(
        weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import facemend.models.pretrained as pretrained

    monkeypatch.setattr(pretrained, "from_pretrained", lambda folder, device="cpu": nan_model())
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(PHOTO, src / "a.jpg")
    shutil.copy(PHOTO, src / "b.jpg")
    rc = restore(str(src), "-o", str(tmp_path / "out"), "--weights", str(weights))
    assert rc == 1
    err = capsys.readouterr().err.splitlines()
    assert err == [f"{src / n}: the model's output holds NaN or infinite values (weights or "
                   "noise not finite)" for n in ("a.jpg", "b.jpg")]
    assert not (tmp_path / "out" / "restored_imgs").exists()  # no flat square pasted
    report = strict_json(tmp_path / "out" / "report.json")
    assert [f["status"] for f in report["files"]] == ["error", "error"]


def test_report_json_never_holds_nan() -> None:
    from facemend.commands.restore import _json_safe

    value = {"a": float("nan"), "b": [1.5, float("inf"), {"c": -float("inf")}], "d": "x",
             "e": (2, float("nan"))}
    assert _json_safe(value) == {"a": None, "b": [1.5, None, {"c": None}], "d": "x",
                                 "e": [2, None]}


@pytest.fixture()
def no_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading a model fails the test: the checks under test must come before it."""
    import facemend.models.pretrained as pretrained

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the options were checked")

    monkeypatch.setattr(pretrained, "from_pretrained", refuse)


@pytest.mark.parametrize("where", ["file", "under a file", "proc"])
def test_a_bad_output_folder_fails_once_before_the_model_loads(
        weights: Path, tmp_path: Path, where: str, no_model: None,
        capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "taken").write_text("a file")
    out = {"file": tmp_path / "taken", "under a file": tmp_path / "taken" / "sub" / "out",
           "proc": Path("/proc/self/facemend-out")}[where]
    if where == "proc" and not Path("/proc/self").is_dir():
        pytest.skip("no /proc")
    rc = restore(str(PHOTO), str(PHOTO), "-o", str(out), "--weights", str(weights))
    assert rc == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: -o {out}: ")
    assert (tmp_path / "taken").read_text() == "a file"


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0,
                    reason="permissions do not bind root")
def test_a_read_only_output_folder_fails_before_the_model_loads(
        weights: Path, tmp_path: Path, no_model: None, capsys: pytest.CaptureFixture) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        assert restore(str(PHOTO), "-o", str(ro), "--weights", str(weights)) == 2
    finally:
        ro.chmod(0o755)
    err = capsys.readouterr().err.splitlines()
    assert err == [f"error: -o {ro}: cannot write there (Permission denied)"]


@pytest.mark.parametrize(("option", "value", "says"), [
    ("--upscale", "200", "--upscale 200: must be in (0, 16] (a 1 MP photo would need "
                         "1,080 GB of output canvases)"),
    ("--upscale", "nan", "--upscale nan: must be a finite number in (0, 16]"),
    ("--samples", "5000", "--samples 5000: must be in [1, 64] (a 1 MP photo at upscale 1 "
                          "would need 75.0 GB of output canvases)"),
])
def test_upscale_and_samples_are_bounded_up_front(
        weights: Path, tmp_path: Path, option: str, value: str, says: str, no_model: None,
        capsys: pytest.CaptureFixture) -> None:
    rc = restore(str(PHOTO), "-o", str(tmp_path / "out"), "--weights", str(weights),
                 option, value)
    assert rc == 2
    assert capsys.readouterr().err.splitlines() == [f"error: {says}"]


def test_output_memory_estimate() -> None:
    from facemend.inference.api import output_bytes

    # 400 x 200 output pixels; 3 samples of (12 + 3) bytes plus one 12-byte float temporary
    assert output_bytes(100, 200, 2.0, 3) == 400 * 200 * (15 * 3 + 12)
    assert output_bytes(1000, 1000, 1.0, 1) == 27_000_000


def test_a_photo_needing_more_memory_than_available_is_refused_by_name(
        weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import facemend.inference.api as api

    w, h = Image.open(PHOTO).size
    need = api.output_bytes(h, w, 2.0, 2)
    monkeypatch.setattr(api, "available_memory", lambda: need - 1)
    rc = restore(str(PHOTO), "-o", str(tmp_path / "out"), "--weights", str(weights),
                 "--upscale", "2", "--samples", "2")
    assert rc == 1
    err = capsys.readouterr().err.splitlines()
    assert err == [f"{PHOTO}: upscale 2 x 2 sample(s) of this {w}x{h} photo would need "
                   f"{need / 1e9:.1f} GB for the output, more than the {(need - 1) / 1e9:.1f} "
                   "GB available; lower the upscale or the samples"]
    monkeypatch.setattr(api, "available_memory", lambda: need)
    assert restore(str(PHOTO), "-o", str(tmp_path / "out"), "--weights", str(weights),
                   "--upscale", "2", "--samples", "2") == 0


def onnx_file(path: Path, meta: dict[str, str], input_name: str = "x",
              shape: tuple[int, ...] = (1, 3, 32, 32)) -> Path:
    """A one-node ONNX graph (Identity) with the given input and facemend metadata."""
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", [input_name], ["y"])], "g",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(shape))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for k, v in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = "facemend_" + k, v
    onnx.save(model, str(path))
    return path


def test_onnx_backend_problems_are_one_line_errors(tmp_path: Path, no_model: None,
                                                   capsys: pytest.CaptureFixture) -> None:
    full = {"resolution": "32", "noise": "zero", "noise_shapes": "[]"}
    (tmp_path / "text.onnx").write_text("not an onnx file\n")
    cases = {
        tmp_path / "missing.onnx": "no such ONNX file",
        tmp_path / "text.onnx": "not a loadable ONNX model",
        onnx_file(tmp_path / "nometa.onnx", {"resolution": "32"}): "incomplete or unreadable",
        onnx_file(tmp_path / "name.onnx", full, input_name="img"): "not those of a facemend",
        onnx_file(tmp_path / "shape.onnx", full, shape=(1, 1, 8, 8)): "not those of a facemend",
    }
    for path, says in cases.items():
        rc = restore(str(PHOTO), "-o", str(tmp_path / "out"), "--backend", "onnx", "--onnx",
                     str(path))
        err = capsys.readouterr().err.splitlines()
        assert rc == 2, (path, err)
        assert len(err) == 1 and err[0].startswith(f"error: {path}: ") and says in err[0], err


def test_ctrl_c_writes_the_report_of_what_was_done_and_exits_130(
        weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from facemend.inference.api import FaceRestorer

    src = tmp_path / "in"
    src.mkdir()
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        shutil.copy(PHOTO, src / name)
    enhance, calls = FaceRestorer.enhance, []

    def interrupted_on_the_second(self, img, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return enhance(self, img, **kw)

    monkeypatch.setattr(FaceRestorer, "enhance", interrupted_on_the_second)
    rc = restore(str(src), "-o", str(tmp_path / "out"), "--weights", str(weights))
    assert rc == 130
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [
        f"interrupted: {tmp_path / 'out' / 'report.json'} lists the 1 photo(s) done and the 2 "
        "not processed"]
    report = strict_json(tmp_path / "out" / "report.json")
    assert [(Path(f["file"]).name, f["status"]) for f in report["files"]] == [
        ("a.jpg", "ok"), ("b.jpg", "not processed"), ("c.jpg", "not processed")]
    assert [p.name for p in (tmp_path / "out" / "restored_imgs").iterdir()] == ["a.jpg"]
