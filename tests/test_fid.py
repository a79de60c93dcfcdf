"""Frechet distance (closed form), FID of a set with itself, Inception loader behaviour."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

from facemend.metrics.fid import (
    INCEPTION_FILE,
    FIDInceptionV3,
    InceptionWeightsError,
    fid_from_features,
    frechet_distance,
    kid,
    load_inception,
)


def test_frechet_distance_of_two_gaussians_closed_form():
    # Diagonal covariances commute: FD = |mu1-mu2|^2 + sum (sqrt(a) - sqrt(b))^2.
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, -1.0, 2.5])
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 2.25])
    want = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(want, rel=1e-10)


def test_frechet_distance_general_covariances():
    rng = np.random.default_rng(0)
    A, B = rng.normal(size=(5, 5)), rng.normal(size=(5, 5))
    s1, s2 = A @ A.T + np.eye(5), B @ B.T + np.eye(5)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    r1 = scipy.linalg.sqrtm(s1)
    want = ((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * scipy.linalg.sqrtm(r1 @ s2 @ r1))
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(float(np.real(want)), rel=1e-8)


def test_fid_of_a_set_with_itself_is_zero_and_kid_small():
    rng = np.random.default_rng(1)
    f = rng.normal(size=(200, 16))
    assert abs(fid_from_features(f, f)) < 1e-6
    assert fid_from_features(f, f + 1.0) == pytest.approx(16.0, abs=1e-6)  # shifted mean only
    shifted = kid(f, f + 1.0, subsets=5, subset_size=100)
    assert shifted > 0.5 and abs(kid(f, f, subsets=5, subset_size=100)) < 0.1 * shifted
    # Singular covariance (N < D): still finite thanks to the eps offset.
    g = rng.normal(size=(6, 32))
    assert np.isfinite(fid_from_features(g, g + 0.1))


def test_inception_loader_accepts_its_layout(tmp_path):
    torch.manual_seed(0)
    model = FIDInceptionV3()
    state = model.state_dict()
    # A few keys of the pytorch-fid file, spelled out as that file has them.
    for key, shape in [("Conv2d_1a_3x3.conv.weight", (32, 3, 3, 3)),
                       ("Mixed_5b.branch_pool.conv.weight", (32, 192, 1, 1)),
                       ("Mixed_6b.branch7x7_2.conv.weight", (128, 128, 1, 7)),
                       ("Mixed_7c.branch3x3dbl_3b.bn.running_var", (384,)),
                       ("fc.weight", (1008, 2048))]:
        assert tuple(state[key].shape) == shape, key
    randomized = {k: torch.randn_like(v) * 0.05 if v.is_floating_point() else v
                  for k, v in state.items()}
    randomized = {k: v.abs() + 0.5 if "running_var" in k else v for k, v in randomized.items()}
    torch.save(randomized, tmp_path / INCEPTION_FILE)
    loaded = load_inception(tmp_path)
    assert torch.equal(loaded.Mixed_7c.branch_pool.conv.weight,
                       randomized["Mixed_7c.branch_pool.conv.weight"])
    with torch.no_grad():
        feats = loaded(torch.rand(2, 3, 64, 64) * 2 - 1)
    assert feats.shape == (2, 2048) and torch.isfinite(feats).all()


def test_inception_loader_rejects_missing_and_foreign_files(tmp_path, monkeypatch):
    monkeypatch.delenv("FACEMEND_FID_DIR", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    with pytest.raises(InceptionWeightsError) as e:
        load_inception(tmp_path / "nowhere")
    msg = str(e.value)
    assert INCEPTION_FILE in msg and "FACEMEND_FID_DIR" in msg and "\n" not in msg
    torch.save({"foo": torch.zeros(1)}, tmp_path / INCEPTION_FILE)
    with pytest.raises(ValueError, match="not a pytorch-fid Inception"):
        load_inception(tmp_path)
