"""Core-set (Sener & Savarese 2018): k-center greedy on pooled neck features."""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import numpy as np
import pandas as pd

from .base import Strategy, frame, pooled_features

if TYPE_CHECKING:
    import torch


def euclidean(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Pairwise Euclidean distances [n, m]."""
    import torch

    return torch.cdist(x, y)


def k_center_greedy(features: torch.Tensor, is_center: torch.Tensor, budget: int, chunk: int = 4096,
                    distance: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = euclidean,
                    block: int = 2 ** 22) -> list[int]:
    """Indices of ``budget`` new centres, each the point farthest from all current centres.

    ``features`` [n, d], ``is_center`` [n] bool (the labeled pool), ``budget`` <= the points left.
    ``distance(x [n, d], y [m, d]) -> [n, m]`` is batched: Euclidean (``torch.cdist``) by
    default, CDAL's symmetric KL for CDAL. With no initial centre the first pick is the point
    farthest from the feature mean. Floating features keep their dtype (integers become float32).
    The first step (every point's distance to its nearest centre) works on blocks of at most about
    ``block`` distances (``chunk`` centres by as many points as fit), so its memory does not grow
    with pool x labeled pool: a 32k pool with 1.6k centres needed 2.2 GiB in one block.
    Source: Sener & Savarese, ICLR 2018, Algorithm 1 (k-Center-Greedy).
    """
    import torch

    x = features if features.is_floating_point() else features.float()
    n = x.shape[0]
    centers = torch.nonzero(is_center).flatten()
    if len(centers):
        min_dist = torch.full((n,), float("inf"), dtype=x.dtype)
        rows = max(1, block // min(len(centers), chunk))
        for r in range(0, n, rows):
            part = min_dist[r:r + rows]  # a view: updated in place
            for s in range(0, len(centers), chunk):
                d = distance(x[r:r + rows], x[centers[s:s + chunk]])
                torch.minimum(part, d.min(dim=1).values, out=part)
    else:
        min_dist = distance(x, x.mean(0, keepdim=True)).flatten()
    min_dist[is_center] = -1.0
    chosen: list[int] = []
    for _ in range(budget):
        i = int(torch.argmax(min_dist))
        chosen.append(i)
        d = distance(x, x[i:i + 1]).flatten()
        # The mean only picks the first centre; it is not a centre itself, so its distances are dropped.
        min_dist = torch.minimum(min_dist, d) if len(centers) or len(chosen) > 1 else d
        min_dist[i] = -1.0
    return chosen


class CoresetStrategy(Strategy):
    name = "coreset"

    def score(self, model, pool, labeled_ids, device, batch_size) -> pd.DataFrame:
        import torch

        from ..engine.predict import run_model

        levels = self.options.get("feature_levels", [0, 1, 2])
        feats: list[torch.Tensor] = []

        def on_batch(images, targets, out, dets):
            feats.append(pooled_features(out["features"], levels).cpu())

        run_model(model, pool, device, batch_size, on_batch, branches=(), return_features=True, detect=False)
        f = torch.cat(feats)
        return frame(pool, labeled_ids, score=np.nan, feature=[row for row in f.numpy()])

    def select(self, scores: pd.DataFrame, budget: int, rng: np.random.Generator) -> list[int]:
        import torch

        x = torch.from_numpy(np.stack(scores["feature"].to_numpy()))
        chosen = k_center_greedy(x, torch.from_numpy(scores["labeled"].to_numpy(dtype=bool, copy=True)), budget)
        return [int(scores["image_id"].iloc[i]) for i in chosen]
