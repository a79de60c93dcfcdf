"""`--config A --config B` overlays and the recipe that rebuilds the shipped models."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from facemend.cli import main
from facemend.config import ConfigError, RunConfig, load_config, merge, to_dict
from facemend.training.loop import model_differs

REPO = Path(__file__).resolve().parents[1]
RECIPES = REPO / "configs" / "recipes"


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_merge_lays_sections_key_by_key() -> None:
    base = {"model": {"resolution": 64, "num_skips": 3}, "train": {"steps": 10}}
    top = {"model": {"num_skips": 2}, "train": {"betas": [0.5, 0.9]}}
    assert merge(base, top) == {"model": {"resolution": 64, "num_skips": 2},
                                "train": {"steps": 10, "betas": [0.5, 0.9]}}
    assert base["model"]["num_skips"] == 3  # inputs are not changed
    assert merge({"train": {"steps": 1}}, {"train": None}) == {"train": None}  # replaced


def test_later_file_overrides_earlier_then_set(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.yaml", "model:\n  resolution: 64\n  num_skips: 3\n"
               "train:\n  steps: 10\n  lr_g: 0.001\n")
    b = _write(tmp_path / "b.yaml", "train:\n  steps: 20\n")
    cfg = load_config(RunConfig, [a, b], ["train.lr_d=0.003"])
    assert (cfg.model.resolution, cfg.model.num_skips) == (64, 3)
    assert (cfg.train.steps, cfg.train.lr_g, cfg.train.lr_d) == (20, 0.001, 0.003)
    assert load_config(RunConfig, [b, a]).train.steps == 10  # order matters
    assert load_config(RunConfig, [a, b], ["train.steps=5"]).train.steps == 5


@pytest.mark.parametrize("text, needle", [
    ("train:\n  step: 20\n", "train.step"),  # unknown key
    ("train:\n  steps: many\n", "train.steps"),  # bad type
    ("model: 3\n", "model"),  # a section that is not a mapping
])
def test_bad_overlay_names_its_own_file(tmp_path: Path, text: str, needle: str) -> None:
    a = _write(tmp_path / "a.yaml", "train:\n  steps: 10\n")
    b = _write(tmp_path / "b.yaml", text)
    with pytest.raises(ConfigError) as e:
        load_config(RunConfig, [a, b])
    msg = str(e.value)
    assert msg.startswith(f"{b}: ") and needle in msg and str(a) not in msg


def test_fields_are_checked_together_after_merging(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.yaml", "model:\n  resolution: 32\n  num_skips: 2\n")
    b = _write(tmp_path / "b.yaml", "model:\n  num_skips: 3\n")  # valid alone (H = 512)
    load_config(RunConfig, b)
    with pytest.raises(ConfigError, match=r"a\.yaml \+ .*b\.yaml: model\.num_skips=3"):
        load_config(RunConfig, [a, b])


def test_train_command_takes_repeated_config(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    a = _write(tmp_path / "a.yaml", "train:\n  steps: 10\n")
    b = _write(tmp_path / "b.yaml", "train:\n  stepz: 20\n")
    (tmp_path / "faces").mkdir()
    rc = main(["train", "--config", str(a), "--config", str(b), "--data", str(tmp_path / "faces"),
               "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err  # train's errors go to stderr
    assert rc == 2 and f"{b}: unknown config key 'train.stepz'" in err
    assert not (tmp_path / "run").exists()


def _recipe_steps() -> dict[int, list[Path]]:
    """The config files reconstruction-128.sh passes to each step, read from the script."""
    script = (RECIPES / "reconstruction-128.sh").read_text()
    assert 'for step in 1 2 3 4; do' in script
    assert '--out "runs/reconstruction/$step"' in script
    base = RECIPES / "reconstruction-base.yaml"
    grown = RECIPES / "reconstruction-128px.yaml"
    assert re.search(r"step >= 3 \)\) && configs\+=\(--config \"\$recipe/reconstruction-128px",
                     script)
    return {n: [base, *([grown] if n >= 3 else []), RECIPES / f"reconstruction-{n}.yaml"]
            for n in (1, 2, 3, 4)}


def test_recipe_chain_starts_each_step_from_the_previous_one() -> None:
    steps = {n: load_config(RunConfig, files) for n, files in _recipe_steps().items()}
    assert steps[1].train.init_from is None
    for n in (2, 3, 4):
        assert steps[n].train.init_from == f"runs/reconstruction/{n - 1}/final"
    assert [steps[n].model.resolution for n in (1, 2, 3, 4)] == [64, 64, 128, 128]
    assert [steps[n].train.steps for n in (1, 2, 3, 4)] == [4000, 6500, 4000, 2500]


@pytest.mark.parametrize("step, weights", [(2, "default-64"), (4, "default")])
def test_recipe_rebuilds_the_shipped_architecture(step: int, weights: str) -> None:
    cfg = load_config(RunConfig, _recipe_steps()[step])
    shipped = json.loads((REPO / "weights" / weights / "config.json").read_text())
    # an option the shipped config predates counts at its default, as --resume reads it
    assert model_differs(shipped["model"], cfg.model) == []
    assert set(shipped["model"]) <= set(to_dict(cfg.model))
    assert cfg.train.steps == shipped["meta"]["steps"]
    assert cfg.train.steps * cfg.train.batch_size == shipped["meta"]["images_seen"]
