"""Growing the resolution (facemend.models.grow) and init_from's plain loading."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from facemend.config import ModelConfig
from facemend.models.generator import Generator
from facemend.models.grow import grow_levels, grow_state
from facemend.models.pretrained import WeightsError, init_from_weights, save_pretrained

SMALL = ModelConfig(resolution=32, channel_base=256, max_channels=16, latent_dim=32, num_skips=2,
                    full_res_skip=True, quantize=False)


def test_grow_levels_and_names() -> None:
    assert [grow_levels(32, h) for h in (32, 64, 256)] == [0, 1, 3]
    with pytest.raises(ValueError, match="model.resolution is 64, this run has 32"):
        grow_levels(64, 32)
    t = torch.zeros(1)
    state = {"encoder.from_rgb.weight": t, "encoder.blocks.0.conv0.weight": t,
             "encoder.blocks.11.conv1.bias": t, "layers.0.conv.weight": t, "skips.16.w": t}
    assert set(grow_state(state, 2)) == {"encoder.blocks.2.conv0.weight",
                                          "encoder.blocks.13.conv1.bias", "layers.0.conv.weight",
                                          "skips.16.w"}
    assert grow_state(state, 0) == state


def test_init_from_same_architecture_copies_every_tensor(tmp_path: Path) -> None:
    torch.manual_seed(0)
    G = Generator(SMALL)
    save_pretrained(G, tmp_path / "w")
    torch.manual_seed(1)
    H = Generator(SMALL)
    assert init_from_weights(H, tmp_path / "w") == []
    for (name, a), b in zip(G.state_dict().items(), H.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_init_from_refuses_a_wider_model(tmp_path: Path) -> None:
    save_pretrained(Generator(SMALL), tmp_path / "w")
    wide = Generator(dataclasses.replace(SMALL, channel_base=512, max_channels=32))
    with pytest.raises(WeightsError, match=r"model\.channel_base is 256, this run has 512; "
                                           r"init_from needs the same value$"):
        init_from_weights(wide, tmp_path / "w")


def test_init_from_grows_the_resolution(tmp_path: Path) -> None:
    small = ModelConfig(resolution=32, channel_base=256, max_channels=32, latent_dim=32,
                        num_skips=2, full_res_skip=True, quantize=False)
    torch.manual_seed(0)
    save_pretrained(Generator(small), tmp_path / "w32")
    src = load_file(tmp_path / "w32" / "model.safetensors")
    big = Generator(dataclasses.replace(small, resolution=64, num_skips=3))
    fresh = init_from_weights(big, tmp_path / "w32")
    got = big.state_dict()
    # encoder block i (32 -> 16 ...) is block i + 1 of the 64 px model (64 -> 32 is the new one)
    for i in range(3):
        assert torch.equal(got[f"encoder.blocks.{i + 1}.conv0.weight"],
                           src[f"encoder.blocks.{i}.conv0.weight"])
    # the decoder counts from 4x4 up and the skips are named by resolution: same names
    for name in ("to_z.weight", "conv4.weight"):
        assert torch.equal(got[f"encoder.{name}"], src[f"encoder.{name}"])
    for name in ("layers.2.conv.weight", "rgbs.2.conv.weight", "skips.32.fusion.weight",
                 "mapping.0.weight", "layer4.conv.weight"):
        assert torch.equal(got[name], src[name]), name
    # fresh: the new fromRGB and top encoder block, the 64 px decoder level and its skip
    assert {".".join(n.split(".")[:3 if n.startswith("encoder.blocks") else 2]) for n in fresh} == {
        "encoder.from_rgb", "encoder.blocks.0", "layers.3", "up_layers.3", "rgbs.3", "skips.64"}
    assert big(torch.randn(1, 3, 64, 64), noise_scale=0).shape == (1, 3, 64, 64)
    # a skip the larger model lacks (32 px full-resolution skip) or a smaller resolution
    with pytest.raises(WeightsError, match="does not have"):
        init_from_weights(Generator(dataclasses.replace(small, resolution=64)), tmp_path / "w32")
    save_pretrained(big, tmp_path / "w64")
    with pytest.raises(WeightsError, match=r"model\.resolution is 64, this run has 32"):
        init_from_weights(Generator(small), tmp_path / "w64")
