"""benchmarks/widen_growth.py: the new-input weights of a widened model against the old ones."""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

from facemend.config import ModelConfig
from facemend.models.generator import Generator
from facemend.models.pretrained import init_from_weights, save_pretrained

_spec = importlib.util.spec_from_file_location(
    "widen_growth", Path(__file__).resolve().parents[1] / "benchmarks" / "widen_growth.py")
widen_growth = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(widen_growth)


def test_growth_is_zero_after_widening_and_reads_the_new_input_block(tmp_path: Path) -> None:
    narrow = ModelConfig(resolution=32, channel_base=256, max_channels=16, latent_dim=32,
                         num_skips=2, quantize=False)
    G = Generator(narrow)
    save_pretrained(G, tmp_path / "narrow")
    wide = Generator(dataclasses.replace(narrow, channel_base=512, max_channels=32))
    _, widened = init_from_weights(wide, tmp_path / "narrow")
    small = {k: v.detach() for k, v in G.state_dict().items()}
    big = {k: v.detach().clone() for k, v in wide.state_dict().items()}
    ratios = widen_growth.growth(small, big)
    gained_inputs = {n for n in widened
                     if small[n].ndim > 1 and big[n].shape[1] > small[n].shape[1]}
    assert set(ratios) == gained_inputs and "layers.0.conv.weight" in ratios
    assert all(r == 0.0 for r in ratios.values())  # widening starts the new inputs at zero
    w = big["layers.0.conv.weight"]  # (32, 32, 3, 3) from (16, 16, 3, 3)
    w[:16, 16:] = -0.5 * w[:16, :16]  # hand-worked: half the old block's RMS
    assert abs(widen_growth.growth(small, big)["layers.0.conv.weight"] - 0.5) < 1e-12
