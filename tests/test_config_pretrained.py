"""Strict config loading, overrides, JSON round trip; save/load of weights folders."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from facemend.config import (
    ConfigError,
    ModelConfig,
    RunConfig,
    from_json,
    load_config,
    to_json,
)
from facemend.models.generator import Generator
from facemend.models.pretrained import (
    WeightsError,
    from_pretrained,
    init_from_weights,
    save_pretrained,
)

REPO = Path(__file__).resolve().parents[1]


def test_every_shipped_config_loads() -> None:
    for path in sorted((REPO / "configs").glob("*.yaml")):
        cfg = load_config(RunConfig, path)
        assert isinstance(cfg.model, ModelConfig), path


def test_unknown_key_is_an_error_naming_key_and_allowed(tmp_path: Path) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text("model:\n  num_skip: 2\n")
    with pytest.raises(ConfigError) as e:
        load_config(RunConfig, p)
    msg = str(e.value)
    assert "model.num_skip" in msg and "num_skips" in msg and str(p) in msg
    p.write_text("modle: {}\n")
    with pytest.raises(ConfigError, match="unknown config key 'modle'"):
        load_config(RunConfig, p)


def test_type_and_range_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="expected an integer"):
        load_config(RunConfig, None, ["model.resolution=abc"])
    with pytest.raises(ConfigError, match="power of two"):
        load_config(RunConfig, None, ["model.resolution=48"])
    with pytest.raises(ConfigError, match="must be one of"):
        load_config(RunConfig, None, ["model.fusion=sum"])
    with pytest.raises(ConfigError, match="key=value"):
        load_config(RunConfig, None, ["model.fusion"])


def test_overrides_and_json_round_trip(tmp_path: Path) -> None:
    cfg = load_config(RunConfig, REPO / "configs" / "tiny-32.yaml",
                      ["model.num_skips=1", "train.betas=[0.5, 0.9]", "train.lr_g=1e-4",
                       "model.fusion=concat", "train.vgg19_weights=/x/vgg.pth"])
    assert cfg.model.num_skips == 1 and cfg.model.fusion == "concat"
    assert cfg.train.betas == (0.5, 0.9) and cfg.train.lr_g == 1e-4
    assert cfg.model.resolution == 32  # from the file
    assert from_json(RunConfig, to_json(cfg)) == cfg


def tiny_generator() -> Generator:
    torch.manual_seed(0)
    return Generator(ModelConfig(resolution=32, channel_base=256, max_channels=16, latent_dim=16,
                                 num_skips=2, codebook_size=8)).eval()


def test_save_load_round_trip_identical_outputs(tmp_path: Path) -> None:
    G = tiny_generator()
    G.update_codebooks(torch.randn(2, 3, 32, 32), torch.Generator().manual_seed(0))
    save_pretrained(G, tmp_path / "w", meta={"steps": 3})
    G2 = from_pretrained(tmp_path / "w")
    x = torch.randn(2, 3, 32, 32)
    a = G(x, generator=torch.Generator().manual_seed(0))
    b = G2(x, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b)
    assert bool(G2.skips["8"].quantizer.initted)
    cfg = json.loads((tmp_path / "w" / "config.json").read_text())
    assert cfg["format_version"] == 1 and cfg["meta"] == {"steps": 3}
    assert not list((tmp_path / "w").glob("*.tmp"))


def test_load_validates_version_shapes_and_files(tmp_path: Path) -> None:
    G = tiny_generator()
    save_pretrained(G, tmp_path / "w")
    cfg_path = tmp_path / "w" / "config.json"
    cfg = json.loads(cfg_path.read_text())

    cfg["format_version"] = 99
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(WeightsError, match="format_version 99"):
        from_pretrained(tmp_path / "w")

    cfg["format_version"] = 1
    cfg["model"]["max_channels"] = 8  # shapes no longer match the tensors
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(WeightsError, match="has shape"):
        from_pretrained(tmp_path / "w")

    cfg["model"]["max_channels"] = 16
    cfg["model"]["bogus"] = 1
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(WeightsError, match="unknown config key 'model.bogus'"):
        from_pretrained(tmp_path / "w")

    del cfg["model"]["bogus"]
    cfg_path.write_text(json.dumps(cfg))
    (tmp_path / "w" / "model.safetensors").write_bytes(b"\x80\x04not safetensors")
    with pytest.raises(WeightsError, match="not a readable safetensors"):
        from_pretrained(tmp_path / "w")
    with pytest.raises(WeightsError, match="no config.json"):
        from_pretrained(tmp_path / "missing")


def test_init_from_grows_the_resolution(tmp_path: Path) -> None:
    small = ModelConfig(resolution=32, channel_base=256, max_channels=32, latent_dim=32,
                        num_skips=2, full_res_skip=True, quantize=False)
    torch.manual_seed(0)
    save_pretrained(Generator(small), tmp_path / "w32")
    src = load_file(tmp_path / "w32" / "model.safetensors")
    big = Generator(dataclasses.replace(small, resolution=64, num_skips=3))
    fresh, widened = init_from_weights(big, tmp_path / "w32")
    assert widened == []
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


@pytest.mark.parametrize(("upsample", "fusion"), [("bilinear", "lgf"), ("transposed", "add")])
def test_init_from_widens_without_changing_the_function(
    tmp_path: Path, upsample: str, fusion: str
) -> None:
    narrow = ModelConfig(resolution=32, channel_base=256, max_channels=16, latent_dim=32,
                         num_skips=2, full_res_skip=True, quantize=False, residual=False,
                         upsample=upsample, fusion=fusion)
    torch.manual_seed(0)
    G = Generator(narrow)
    with torch.no_grad():  # fresh biases and noise strengths are 0: give them values to keep
        for p in G.parameters():
            if p.ndim == 1:
                p.add_(0.3 * torch.randn_like(p))
    save_pretrained(G, tmp_path / "narrow")
    # every resolution wider (16 -> 32 channels at 4-16 px, 8 -> 16 at 32 px)
    wide = Generator(dataclasses.replace(narrow, channel_base=512, max_channels=32))
    assert wide.cfg.channels(32) == 16 and narrow.channels(32) == 8
    fresh, widened = init_from_weights(wide, tmp_path / "narrow")
    assert fresh == []  # every tensor was widened or copied, none is wholly new
    assert "encoder.to_z.weight" in widened and "layers.0.conv.weight" in widened
    assert "mapping.0.weight" not in widened  # the latent keeps its width
    x = torch.randn(3, 3, 32, 32)
    for batch in (x, x[:1]):  # the batched and the folded single-sample conv paths
        torch.testing.assert_close(wide(batch, noise_scale=0), G(batch, noise_scale=0),
                                   rtol=1e-4, atol=1e-5)
    w = wide.layers[0].conv.weight  # 8 px: (32, 32, 3, 3) from (16, 16, 3, 3)
    assert w[:16, 16:].abs().sum() == 0 and w[16:].abs().sum() > 0  # new inputs unread, new rows
    # narrower anywhere, or codebooks or concatenated skips (not widened exactly), is refused
    with pytest.raises(WeightsError, match=r"model\.max_channels is 16, this run has 8; "
                                           r"init_from needs the same value or"):
        init_from_weights(Generator(dataclasses.replace(narrow, max_channels=8)),
                          tmp_path / "narrow")
    for change in ({"quantize": True}, {"fusion": "concat"}):
        save_pretrained(Generator(dataclasses.replace(narrow, **change)), tmp_path / "other")
        with pytest.raises(WeightsError, match=r"model\.channel_base is 256"):
            init_from_weights(Generator(dataclasses.replace(narrow, channel_base=512,
                                                            max_channels=32, **change)),
                              tmp_path / "other")
