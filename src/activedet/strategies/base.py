"""The strategy interface: score the pool with a trained detector, then pick a batch."""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:  # torch is imported only where a model runs, so selection steps start fast
    import torch

    from ..data.dataset import DetectionDataset


class Strategy:
    """Subclasses set ``name`` and implement :meth:`score`; :meth:`select` picks the top scores.

    ``score`` returns a DataFrame with one row per pool image: ``image_id``,
    ``labeled`` (bool), ``score`` (higher = more worth labeling; NaN for
    labeled images) and, for strategies that need them, more columns such as
    ``feature`` (a list of floats).
    """

    name = "base"
    needs_model = True
    trainer = "detector"  # the training rule its models come from: "detector" (plain) or a method's own

    def __init__(self, options: dict | None = None):
        """``options``: the strategy's params section (``strategies.<name>``, a variant's merged over it); the
        schema's defaults fill what is missing, so a checkpoint or a caller older than an option still works."""
        from ..params import strategy_defaults, strategy_names

        self.options = strategy_defaults(self.name, options) if self.name in strategy_names() else (options or {})

    def check_model(self, ckpt: dict, model_path) -> None:
        """Refuse a checkpoint from another trainer (e.g. a plain detector for MI-AOD's two classifiers)."""
        from ..checkpoint import check_trainer

        check_trainer(ckpt, model_path, self.name, self.trainer)

    def score(self, model, pool: DetectionDataset, labeled_ids: set[int], device: torch.device,
              batch_size: int) -> pd.DataFrame:
        raise NotImplementedError

    def select(self, scores: pd.DataFrame, budget: int, rng: np.random.Generator) -> list[int]:
        """Top-``budget`` unlabeled images by score; ties broken by image id (deterministic)."""
        unl = scores[~scores["labeled"]]
        ordered = unl.sort_values(["score", "image_id"], ascending=[False, True], kind="mergesort")
        return [int(i) for i in ordered["image_id"].head(budget)]


def frame(pool: DetectionDataset, labeled_ids: set[int], **columns) -> pd.DataFrame:
    ids = [r[0]["id"] for r in pool.records]
    df = pd.DataFrame({"image_id": ids, "labeled": [i in labeled_ids for i in ids]})
    for name, values in columns.items():
        df[name] = values
    return df


def pooled_features(features: list[torch.Tensor], levels: list[int]) -> torch.Tensor:
    """Global-average-pooled FPN features of the chosen levels, concatenated: [B, sum C]."""
    import torch

    return torch.cat([features[i].mean(dim=(2, 3)) for i in levels], dim=1)
