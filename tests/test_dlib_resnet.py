"""The torch port of dlib's face ResNet against dlib itself, on real photos."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

dlib = pytest.importorskip("dlib")

from facemend.commands import embed as embed_cmd  # noqa: E402
from facemend.faces import (  # noqa: E402
    FaceModelError,
    embed_aligned,
    get_face_chip,
    load_face_net,
    read_dlib_net,
)
from facemend.faces.dlib_resnet import default_model_path  # noqa: E402
from facemend.io import load_rgb, to_tensor  # noqa: E402

FIXTURES = Path(__file__).resolve().parent / "fixtures"
PEOPLE = FIXTURES / "people"  # MIT photos (its README)
# (file, person): small enough for a fast HOG pass; obama2/biden use dlib's pyramid (scale > 2)
PHOTOS = [
    ("obama.jpg", "obama"),
    ("obama2.jpg", "obama"),
    ("biden2.jpg", "biden"),
    ("alex_lacamoire1.jpg", "alex"),
    ("rose_leslie1.jpg", "rose"),
]


@pytest.fixture(scope="module")
def dlib_tools() -> dict:
    model = default_model_path()
    return {
        "detector": dlib.get_frontal_face_detector(),
        "landmarks": dlib.shape_predictor(
            str(model.parent / "shape_predictor_5_face_landmarks.dat")),
        "net": dlib.face_recognition_model_v1(str(model)),
    }


@pytest.fixture(scope="module")
def photo_faces(dlib_tools: dict) -> list[tuple[str, np.ndarray, object]]:
    """(person, image, 5-point shape of the largest face) for each photo in PHOTOS."""
    out = []
    for name, person in PHOTOS:
        img = load_rgb(PEOPLE / name)
        dets = dlib_tools["detector"](img, 0)
        assert len(dets), name
        out.append((person, img, dlib_tools["landmarks"](img, max(dets, key=lambda r: r.area()))))
    return out


def _port_descriptor(img: np.ndarray, shape: object) -> np.ndarray:
    lm = torch.tensor([[(shape.part(i).x, shape.part(i).y) for i in range(5)]], dtype=torch.float64)
    x = torch.from_numpy(img.copy()).permute(2, 0, 1)[None].float()  # (1, 3, H, W)
    with torch.no_grad():
        return load_face_net()(get_face_chip(x, lm, quantize=True))[0].numpy()


def test_port_matches_dlib_descriptors(photo_faces: list, dlib_tools: dict) -> None:
    ref = np.array([dlib_tools["net"].compute_face_descriptor(img, s) for _, img, s in photo_faces])
    port = np.array([_port_descriptor(img, s) for _, img, s in photo_faces])
    assert np.abs(port - ref).max() < 1e-3
    people = np.array([p for p, _, _ in photo_faces])
    same_ref = np.linalg.norm(ref[:, None] - ref[None], axis=-1) < 0.6
    same_port = np.linalg.norm(port[:, None] - port[None], axis=-1) < 0.6
    assert (same_ref == same_port).all()
    assert (same_port == (people[:, None] == people[None])).all()


def test_net_alone_matches_dlib_on_its_chips(photo_faces: list, dlib_tools: dict) -> None:
    chips = [dlib.get_face_chip(img, s, 150, 0.25) for _, img, s in photo_faces]
    ref = np.array([dlib_tools["net"].compute_face_descriptor(c) for c in chips])
    x = torch.from_numpy(np.stack(chips)).permute(0, 3, 1, 2).float()  # (B, 3, 150, 150)
    with torch.no_grad():
        port = load_face_net()(x).numpy()
    assert np.abs(port - ref).max() < 1e-4


def test_embed_aligned_separates_identities() -> None:
    # three people, two aligned faces each (tests/fixtures: the MIT example photos)
    pairs = [("faces/john2_00.png", "faces/kit_with_rose_00.png"),
             ("faces/obama1_00.png", "faces/obama_and_biden_01.png"),
             ("faces/obama_and_biden_02.png", "identities/biden_00.png")]
    x = torch.cat([to_tensor(load_rgb(FIXTURES / f)) for pair in pairs for f in pair])  # (6, ...)
    with torch.no_grad():
        e = embed_aligned(x).view(len(pairs), 2, 128)
    same = (e[:, 0] - e[:, 1]).norm(dim=-1)
    diff = (e[:, 0] - e.roll(1, 0)[:, 1]).norm(dim=-1)
    assert (same < 0.6).all() and (diff > 0.6).all(), (same, diff)


def test_gradients_reach_the_input() -> None:
    x = (torch.rand(2, 3, 64, 64) * 2 - 1).requires_grad_(True)
    e = embed_aligned(x)
    (e[0] - e[1]).square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    img = (torch.rand(1, 3, 400, 400) * 255).requires_grad_(True)
    lm = torch.tensor([[[260.0, 180], [230, 182], [120, 180], [150, 182], [190, 260]]])
    load_face_net()(get_face_chip(img, lm)).sum().backward()  # scale > 2: pyramid path
    assert img.grad is not None and img.grad.abs().sum() > 0


def test_batch_equals_single_calls() -> None:
    torch.manual_seed(0)
    x = torch.rand(8, 3, 150, 150) * 255
    net = load_face_net()
    with torch.no_grad():
        batched = net(x)
        single = torch.cat([net(x[i : i + 1]) for i in range(8)])
    assert batched.shape == (8, 128)
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=1e-5)
    assert load_face_net() is net
    assert len(net.features(x[:1])) == 6


def _assert_one_line_error(path: Path, needle: str) -> None:
    with pytest.raises(FaceModelError) as info:
        read_dlib_net(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: ") and "\n" not in msg and needle in msg, msg


def test_corrupted_and_truncated_files(tmp_path: Path) -> None:
    data = default_model_path().read_bytes()
    (tmp_path / "half.dat").write_bytes(data[: len(data) // 2])
    _assert_one_line_error(tmp_path / "half.dat", "truncated")
    (tmp_path / "end.dat").write_bytes(data[:-3])
    _assert_one_line_error(tmp_path / "end.dat", "truncated")
    (tmp_path / "header.dat").write_bytes(data.replace(b"loss_metric_2", b"loss_metrix_2", 1))
    _assert_one_line_error(tmp_path / "header.dat", "loss_metric")
    i = data.index(b"con_4") + 5 + 2  # the first conv's tensor: version 2, then its dims
    (tmp_path / "dims.dat").write_bytes(data[:i] + b"\x7f" + data[i + 1 :])
    _assert_one_line_error(tmp_path / "dims.dat", "corrupted")
    (tmp_path / "empty.dat").write_bytes(b"")
    _assert_one_line_error(tmp_path / "empty.dat", "empty")
    _assert_one_line_error(tmp_path / "missing.dat", "not found")
    with pytest.raises(FaceModelError):
        load_face_net(tmp_path / "half.dat")


def _run_embed(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    embed_cmd.add_arguments(parser)
    return embed_cmd.run(parser.parse_args(argv))


def test_embed_command(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder = PEOPLE
    obama, obama2 = folder / PHOTOS[0][0], folder / PHOTOS[1][0]
    rose = folder / PHOTOS[4][0]
    assert _run_embed([str(obama), str(obama2), "--compare", "--upsample", "0"]) == 0
    assert "same person" in capsys.readouterr().out
    assert _run_embed([str(obama), str(rose), "--compare", "--upsample", "0"]) == 0
    assert "different people" in capsys.readouterr().out

    blank = tmp_path / "blank.png"
    blank.write_bytes(b"")
    wall = tmp_path / "wall.png"
    Image.new("RGB", (64, 64), (120, 130, 140)).save(wall)
    out = tmp_path / "emb.json"
    code = _run_embed([str(obama), str(wall), str(blank), "--out", str(out),
                       "--upsample", "0"])
    doc = json.loads(out.read_text())
    assert code == 1 and len(doc["embeddings"]) == 1
    assert len(doc["embeddings"][0]["embedding"]) == 128
    reasons = {Path(f["file"]).name: f["reason"] for f in doc["failed"]}
    assert "no face" in reasons["wall.png"] and "empty" in reasons["blank.png"]
