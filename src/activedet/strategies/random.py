"""Uniform random selection: the reference every strategy is compared with."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .base import Strategy, frame


class RandomStrategy(Strategy):
    name = "random"
    needs_model = False

    def score(self, model, pool, labeled_ids, device, batch_size) -> pd.DataFrame:
        return frame(pool, labeled_ids, score=np.nan)

    def select(self, scores: pd.DataFrame, budget: int, rng: np.random.Generator) -> list[int]:
        ids = sorted(int(i) for i in scores.loc[~scores["labeled"], "image_id"])
        return sorted(int(i) for i in rng.choice(ids, size=budget, replace=False))
