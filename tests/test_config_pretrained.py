"""Strict config loading, overrides, JSON round trip; save/load of weights folders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

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


def _weights_with(tmp_path: Path, **model: object) -> Path:
    """A tiny weights folder whose config.json's model section is changed by `model`."""
    folder = tmp_path / "w"
    save_pretrained(tiny_generator(), folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["model"].update(model)
    (folder / "config.json").write_text(json.dumps(cfg))
    return folder


@pytest.mark.parametrize(("model", "words"), [
    ({"max_channels": 200000, "channel_base": 10**12}, "must be in [1, "),
    ({"latent_dim": 10**9}, "model.latent_dim=1000000000: must be in"),
    ({"latent_dim": 1e9}, "expected an integer"),
    ({"latent_dim": -1}, "model.latent_dim=-1: must be in"),
    ({"codebook_size": 10**8}, "model.codebook_size"),
    ({"max_channels": 6000}, "has shape"),  # valid config, 4 GB model: the header says no
    ({"latent_dim": 4096}, "has shape"),
])
def test_weights_config_checked_before_any_module_is_built(tmp_path, monkeypatch, model, words):
    import facemend.models.pretrained as pretrained

    built = []

    def counting(cfg):
        if torch.empty(0).device.type != "meta":
            built.append(cfg)
        return Generator(cfg)

    monkeypatch.setattr(pretrained, "Generator", counting)
    folder = _weights_with(tmp_path, **model)
    with pytest.raises(WeightsError) as e:
        pretrained.from_pretrained(folder)
    assert words in str(e.value) and "\n" not in str(e.value)
    assert built == []  # failed from the config and the safetensors header alone


def test_weights_header_truncated_or_altered(tmp_path):
    folder = _weights_with(tmp_path)
    wfile = folder / "model.safetensors"
    data = wfile.read_bytes()
    wfile.write_bytes(data[:-100])
    with pytest.raises(WeightsError, match="truncated or altered"):
        from_pretrained(folder)
    wfile.write_bytes(data + b"\0" * 64)  # tensor data longer than the tensors need
    with pytest.raises(WeightsError, match="truncated or altered"):
        from_pretrained(folder)
    wfile.write_bytes((2**40).to_bytes(8, "little") + data[8:])  # header length absurd
    with pytest.raises(WeightsError, match="not a readable safetensors"):
        from_pretrained(folder)
    wfile.write_bytes(data)
    assert from_pretrained(folder).cfg.max_channels == 16


def test_deeply_nested_config_json_is_one_line(tmp_path):
    folder = _weights_with(tmp_path)
    (folder / "config.json").write_text("[" * 200000 + "]" * 200000)
    with pytest.raises(WeightsError, match="nested too deeply"):
        from_pretrained(folder)


def test_yaml_alias_bomb_duplicates_and_empty_files(tmp_path):
    bomb = tmp_path / "bomb.yaml"
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    bomb.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match="aliases"):
        load_config(RunConfig, bomb)
    dup = tmp_path / "dup.yaml"
    dup.write_text("train:\n  steps: 10\n  steps: 20\n")
    with pytest.raises(ConfigError, match="'steps' is given twice"):
        load_config(RunConfig, dup)
    for text in ("", "\n# only a comment\n"):
        empty = tmp_path / "empty.yaml"
        empty.write_text(text)
        with pytest.raises(ConfigError, match="empty config file"):
            load_config(RunConfig, empty)
    (tmp_path / "ok.yaml").write_text("train:\n  steps: 10\n")
    assert load_config(RunConfig, tmp_path / "ok.yaml").train.steps == 10


@pytest.mark.parametrize(("key", "value"), [("batch_size", -4), ("batch_size", 0),
                                            ("steps", 0), ("steps", -5)])
def test_train_sizes_must_be_positive(key, value):
    with pytest.raises(ConfigError, match=f"train.{key}={value}: must be >= 1"):
        load_config(RunConfig, None, [f"train.{key}={value}"])
