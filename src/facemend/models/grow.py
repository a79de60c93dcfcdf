"""Growing a generator's resolution: a smaller G's weights as the start of one 2^k times larger.

The larger G has k more encoder blocks and decoder levels on top. Its decoder counts levels from
4x4 up and its skips are named by resolution, so those tensors keep their names; its encoder counts
blocks from the input down, so the smaller G's block i becomes block i + k, and the smaller G's
fromRGB is dropped (the larger G's feature at the old H comes from its new top block). What the
smaller G lacks (the new blocks, levels, ToRGB layers and skips) keeps its fresh initialisation.
"""

from __future__ import annotations

import torch


def grow_levels(saved: int, wanted: int) -> int:
    """k such that `wanted` = 2^k * `saved` (both powers of two); ValueError if it is smaller."""
    if wanted < saved:
        raise ValueError(f"model.resolution is {saved}, this run has {wanted}; "
                         "init_from needs the same or a larger one")
    return (wanted // saved).bit_length() - 1


def grow_state(state: dict[str, torch.Tensor], levels: int) -> dict[str, torch.Tensor]:
    """A smaller G's tensors renamed for a G with `levels` more resolutions: encoder block i
    becomes block i + levels and fromRGB is dropped; every other name is kept."""
    if levels == 0:
        return state
    out: dict[str, torch.Tensor] = {}
    for name, t in state.items():
        if name.startswith("encoder.from_rgb."):
            continue
        if name.startswith("encoder.blocks."):
            index, rest = name.removeprefix("encoder.blocks.").split(".", 1)
            name = f"encoder.blocks.{int(index) + levels}.{rest}"
        out[name] = t
    return out
