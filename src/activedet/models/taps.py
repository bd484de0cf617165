"""Intermediate head outputs read during the ordinary forward pass (no second forward)."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn


@contextmanager
def capture_tower_outputs(model: nn.Module, branch: str) -> Iterator[list[torch.Tensor]]:
    """While active, every forward appends the tower output of head ``branch`` (the map its final
    conv reads) per FPN level, in level order, to the yielded list; the caller empties it.

    A forward hook on the tower: the detector's forward stays exactly as it is.
    """
    maps: list[torch.Tensor] = []
    handle = model.branches[branch].tower.register_forward_hook(lambda module, inputs, output: maps.append(output))
    try:
        yield maps
    finally:
        handle.remove()


def anchor_features(level_maps: list[torch.Tensor], image_idx: torch.Tensor, anchor_idx: torch.Tensor,
                    num_anchors: int) -> torch.Tensor:
    """The feature vector at each anchor's location: [N, C] for N (image, anchor) pairs.

    Anchors are ordered level by level, location-major and anchor-minor (torchvision's
    order, see ``Branch.forward``), so with the levels' locations concatenated the
    location of anchor ``a`` is ``a // num_anchors``.
    """
    locations = torch.cat([m.flatten(2).transpose(1, 2) for m in level_maps], dim=1)  # [B, sum H*W, C]
    return locations[image_idx, anchor_idx // num_anchors]
