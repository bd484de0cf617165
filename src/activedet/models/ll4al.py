"""LL4AL's loss-prediction module (Yoo & Kweon, CVPR 2019) on the detector's neck levels.

Per FPN level: global average pool -> FC 128 -> ReLU; the levels' vectors are
concatenated and one FC gives the predicted loss of the image. Trained with the
pairwise margin-ranking loss against each image's (detached) detection loss.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

HIDDEN = 128  # the paper's FC width per level


class LossPredictionModule(nn.Module):
    def __init__(self, level_channels: list[int], hidden: int = HIDDEN):
        super().__init__()
        self.level_fcs = nn.ModuleList(nn.Linear(c, hidden) for c in level_channels)
        self.out = nn.Linear(hidden * len(level_channels), 1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        """Predicted loss per image [B] from the FPN maps [B, C, H_l, W_l]."""
        pooled = [F.relu(fc(f.mean(dim=(2, 3)))) for fc, f in zip(self.level_fcs, features)]
        return self.out(torch.cat(pooled, dim=1)).squeeze(1)


def add_loss_module(model: nn.Module) -> nn.Module:
    """Attach the module as ``model.loss_module`` (its weights live in the checkpoint's state dict).

    Built after the detector, so the detector's initial weights equal the plain detector's for a seed.
    """
    channels = model.backbone.out_channels  # one width for an FPN, one per level for SSD's feature maps
    if isinstance(channels, int):
        channels = [channels] * len(model.backbone.strides)
    model.loss_module = LossPredictionModule(list(channels))
    return model


def ranking_loss(predicted: torch.Tensor, target: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
    """LL4AL's pairwise loss: the batch split in halves, image i paired with image B-1-i.

    ``max(0, -sign(l_i - l_j) * (l̂_i - l̂_j) + margin)`` averaged over the B//2 pairs, with
    sign +1 when the true loss of i is larger and -1 otherwise (ties included, as in the
    authors' code). The target is detached. With an odd batch the middle image has no pair.
    """
    n = predicted.shape[0] // 2
    if n == 0:
        return predicted.sum() * 0.0
    target = target.detach()
    first, second = predicted[:n], predicted.flip(0)[:n]
    sign = torch.where(target[:n] > target.flip(0)[:n], 1.0, -1.0).to(predicted.dtype)
    # torch's margin ranking loss is exactly max(0, -y (x1 - x2) + margin), mean over pairs.
    return F.margin_ranking_loss(first, second, sign, margin=margin)
