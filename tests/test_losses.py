"""Losses (eq. 8-10), DiffAugment and the VGG19 loader."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from facemend.losses import (
    PerceptualLoss,
    adversarial_g,
    diff_augment,
    discriminator_loss,
    feature_matching,
    generator_loss,
    gradient_variance,
    l1_loss,
    r1_penalty,
    rand_translation,
)
from facemend.vgg19 import (
    LAYER_NAMES,
    VGG19,
    WEIGHTS_ENV,
    WEIGHTS_FILE,
    VGG19WeightsError,
    VGG19WeightsMissingError,
    load_vgg19,
)

FACES = Path(__file__).resolve().parent / "fixtures" / "faces"


def test_adversarial_losses_at_known_logits() -> None:
    zeros = torch.zeros(4)
    assert adversarial_g(zeros).item() == pytest.approx(math.log(2))
    total, terms = discriminator_loss(zeros, zeros)
    assert total.item() == pytest.approx(2 * math.log(2))
    assert terms["loss_d_real"].item() == pytest.approx(math.log(2))
    big = torch.full((4, 1), 30.0)
    assert adversarial_g(big).item() == pytest.approx(0.0, abs=1e-6)  # D fooled: G loss ~0
    assert discriminator_loss(big, -big)[0].item() == pytest.approx(0.0, abs=1e-6)  # perfect D
    total, terms = discriminator_loss(-big, big)
    assert total.item() == pytest.approx(60.0, rel=1e-4)
    assert terms["loss_d_fake"].item() == pytest.approx(30.0, rel=1e-4)
    logit = torch.tensor([0.7])
    assert adversarial_g(logit).item() == pytest.approx(-math.log(torch.sigmoid(logit).item()))


def test_l1_and_r1() -> None:
    a, b = torch.zeros(2, 3, 4, 4), torch.full((2, 3, 4, 4), 0.5)
    assert l1_loss(a, b).item() == pytest.approx(0.5)
    # R1 of D(y) = sum(w * y): gradient is w, so the penalty is ||w||^2.
    y = torch.randn(3, 3, 4, 4, requires_grad=True)
    w = torch.randn(1, 3, 4, 4)
    expected = w.square().sum().item()
    assert r1_penalty((y * w).sum(dim=[1, 2, 3]), y).item() == pytest.approx(expected, rel=1e-5)


def test_diff_augment_differentiable_and_seeded() -> None:
    x = torch.randn(4, 3, 16, 16, requires_grad=True)
    out = diff_augment(x, "color,translation,cutout", torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    out.square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    a = diff_augment(x.detach(), "color,translation", g1)
    assert torch.equal(a, diff_augment(x.detach(), "color,translation", g2))
    assert not torch.equal(a, diff_augment(x.detach(), "color,translation", g2))  # new draw
    assert torch.equal(diff_augment(x.detach(), "", g1), x.detach())
    with pytest.raises(ValueError, match="unknown DiffAugment op 'colour'"):
        diff_augment(x, "colour", g1)


def test_diff_augment_ops_per_sample() -> None:
    x = torch.ones(8, 3, 16, 16)
    # Colour on a constant image: brightness shifts each sample by its own offset in [-0.5, 0.5).
    c = diff_augment(x, "color", torch.Generator().manual_seed(1))
    offsets = c.mean(dim=[1, 2, 3])
    assert offsets.unique().numel() == 8 and ((offsets - 1).abs() <= 0.5).all()
    # Translation moves content, pads with zeros, never more than 1/8 of the side (2 px).
    t = rand_translation(x, torch.Generator().manual_seed(2))
    zero_rows = (t[:, 0].sum(dim=2) == 0).sum(dim=1)  # (B,)
    zero_cols = (t[:, 0].sum(dim=1) == 0).sum(dim=1)
    assert (zero_rows <= 2).all() and (zero_cols <= 2).all()
    assert (zero_rows + zero_cols > 0).any()
    assert set(t.unique().tolist()) <= {0.0, 1.0}
    # Translation keeps the image content (a pure integer shift).
    ramp = torch.arange(16.0).view(1, 1, 1, 16).expand(2, 3, 16, 16) + 1
    s = rand_translation(ramp, torch.Generator().manual_seed(4))
    row = s[0, 0, 8]
    nz = row[row > 0]
    assert torch.equal(nz.diff(), torch.ones(nz.numel() - 1))
    # Cutout zeroes a square of about half the side in each sample.
    k = diff_augment(x, "cutout", torch.Generator().manual_seed(5))
    frac = (k[:, 0] == 0).float().mean(dim=[1, 2])
    assert (frac > 0).all() and (frac <= 0.25 + 1e-6).all()


def _fake_torchvision_state(model: VGG19) -> dict[str, torch.Tensor]:
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(4, 4)  # torchvision's head: ignored on load
    state["classifier.6.bias"] = torch.zeros(1000)
    return state


def test_vgg19_layout_matches_torchvision() -> None:
    keys = list(VGG19().state_dict())
    convs = [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34]
    assert keys == [f"features.{i}.{w}" for i in convs for w in ("weight", "bias")]
    assert LAYER_NAMES[34] == "conv5_4" and LAYER_NAMES[2] == "conv1_2"
    assert len(LAYER_NAMES) == 37


def test_load_vgg19_roundtrip_and_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    src = VGG19()
    path = tmp_path / WEIGHTS_FILE
    torch.save(_fake_torchvision_state(src), path)
    vgg = load_vgg19(path)
    assert torch.equal(vgg.features[34].weight, src.features[34].weight)
    assert not vgg.training and not any(p.requires_grad for p in vgg.parameters())
    monkeypatch.setenv(WEIGHTS_ENV, str(path))
    assert torch.equal(load_vgg19().features[0].bias, src.features[0].bias)

    monkeypatch.delenv(WEIGHTS_ENV)
    with pytest.raises(VGG19WeightsMissingError, match=f"{WEIGHTS_FILE}.*{WEIGHTS_ENV}"):
        load_vgg19()
    with pytest.raises(FileNotFoundError, match=f"nope.pth.*{WEIGHTS_FILE}.*{WEIGHTS_ENV}"):
        load_vgg19(tmp_path / "nope.pth")

    state = _fake_torchvision_state(src)
    del state["features.34.weight"]
    torch.save(state, tmp_path / "missing.pth")
    with pytest.raises(VGG19WeightsError, match="missing keys.*'features.34.weight'"):
        load_vgg19(tmp_path / "missing.pth")
    state = _fake_torchvision_state(src)
    state["features.0.weight"] = torch.zeros(64, 3, 5, 5)
    torch.save(state, tmp_path / "shape.pth")
    with pytest.raises(VGG19WeightsError, match=r"'features.0.weight' has shape \(64, 3, 5, 5\)"):
        load_vgg19(tmp_path / "shape.pth")
    foreign = {"conv.weight": torch.zeros(1), **_fake_torchvision_state(src)}
    torch.save(foreign, tmp_path / "foreign.pth")
    with pytest.raises(VGG19WeightsError, match="unexpected keys.*'conv.weight'"):
        load_vgg19(tmp_path / "foreign.pth")
    (tmp_path / "junk.pth").write_bytes(b"garbage")
    with pytest.raises(VGG19WeightsError, match="junk.pth: cannot read"):
        load_vgg19(tmp_path / "junk.pth")


def test_perceptual_loss_zero_iff_identical() -> None:
    torch.manual_seed(0)
    loss_fn = PerceptualLoss(VGG19())
    y = torch.rand(2, 3, 32, 32) * 2 - 1
    assert loss_fn(y, y.clone()).item() == 0.0
    x = (y + 0.1 * torch.randn_like(y)).clamp(-1, 1).requires_grad_(True)
    loss = loss_fn(x, y)
    assert loss.item() > 0
    loss.backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in loss_fn.vgg.parameters())
    loss_fn.train()
    assert not loss_fn.vgg.training


def test_generator_loss_weights_each_term_of_eq7() -> None:
    from facemend.config import TrainConfig

    tc = TrainConfig(l1_weight=0.5, alpha=0.1, vq_beta=0.25, feature_matching_weight=2.0,
                     identity_weight=0.3, face_perceptual_weight=0.0, lambda_p=1.0,
                     gradient_variance_weight=100.0)
    one = torch.tensor(1.0)
    terms = {"loss_l1": one * 2, "loss_vq": one * 4, "loss_adv": one * 10, "loss_fm": one * 3,
             "loss_id": one * 1, "loss_face": one * 7, "loss_gv": one * 0.01}
    # 0.5*2 + 0.25*4 + 0.1*10 + 2*3 + 0.3*1 + 0*7 + 100*0.01 = 10.3
    assert generator_loss(terms, tc).item() == pytest.approx(10.3)
    assert generator_loss({"loss_l1": one}, tc).item() == pytest.approx(0.5)  # missing terms: 0
    with pytest.raises(AssertionError):
        generator_loss({"loss_l1": one, "loss_typo": one}, tc)


def test_feature_matching_is_mean_l1_over_blocks_and_stops_real_gradient() -> None:
    fake = [torch.zeros(2, 3, 4, 4, requires_grad=True),
            torch.zeros(2, 5, 2, 2, requires_grad=True)]
    real = [torch.ones(2, 3, 4, 4, requires_grad=True),
            torch.full((2, 5, 2, 2), 3.0, requires_grad=True)]
    loss = feature_matching(fake, real)
    assert loss.item() == pytest.approx((1.0 + 3.0) / 2)
    loss.backward()
    assert fake[0].grad is not None and real[0].grad is None


def test_paired_diff_augment_gives_a_face_and_its_ground_truth_the_same_draw() -> None:
    x = torch.rand(4, 3, 16, 16) * 2 - 1
    g = torch.Generator().manual_seed(3)
    both = diff_augment(torch.cat([x, x]), "color,translation,cutout", g, pairs=2)
    assert torch.equal(both[:4], both[4:])  # identical inputs, identical augmentation
    unpaired = diff_augment(torch.cat([x, x]), "color,translation,cutout",
                            torch.Generator().manual_seed(3))
    assert not torch.equal(unpaired[:4], unpaired[4:])
    assert not torch.equal(both[0], both[1])  # still random per face


def test_gradient_variance_of_a_ramp_by_hand() -> None:
    # grey ramp I = a*x on one 8 x 8 tile: Sobel/8 gives d/dx = a inside and a/2 on the two
    # replicate-padded border columns, d/dy = 0; the unbiased variance of 48 a's and 16 a/2's
    # is (48 (a/8)^2 + 16 (3a/8)^2) / 63 = a^2 / 21, so the MSE over (x, y) is (a^2/21)^2 / 2
    a = 0.1
    ramp = (a * torch.arange(8.0)).expand(1, 3, 8, 8)
    flat = torch.zeros(1, 3, 8, 8)
    assert gradient_variance(ramp, flat).item() == pytest.approx(a**4 / 882, rel=1e-5)
    assert gradient_variance(ramp.transpose(2, 3), flat).item() == pytest.approx(a**4 / 882,
                                                                                 rel=1e-5)
    assert gradient_variance(ramp + 0.3, ramp).item() < 1e-15  # brightness is not detail


def test_gradient_variance_prefers_a_shifted_detail_to_its_blur() -> None:
    from facemend.io import load_rgb, to_tensor

    face = to_tensor(load_rgb(FACES / "john2_00.png"))  # (1, 3, 128, 128) in [-1, 1]
    k = torch.exp(-torch.arange(-3.0, 4.0) ** 2 / 2)
    k = (k / k.sum()).view(1, 1, 1, 7).expand(3, 1, 1, 7)
    blurred = torch.nn.functional.conv2d(face, k, padding=(0, 3), groups=3)
    blurred = torch.nn.functional.conv2d(blurred, k.transpose(2, 3), padding=(3, 0), groups=3)
    y, shifted, blurred = face[..., :120], face[..., 1:121], blurred[..., :120]  # 1 px shift
    # L1 rates the one-pixel shift worse than a blur of sigma 1; the gradient variance rates
    # it far better (its tiles keep their texture energy)
    assert l1_loss(shifted, y) > l1_loss(blurred, y)
    assert gradient_variance(shifted, y) < 0.2 * gradient_variance(blurred, y)
