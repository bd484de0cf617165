"""MGRAL (mAP-guided reinforced active learning): the agent's scores of the unlabeled pool.

Its cycle model is the plain detector (same recipe as the baselines). ``score`` writes the pool's
embeddings (pooled FPN features, PCA to ``embedding_dim``); the lookup table and the agent run as
their own steps (``activedet.mgral``), and ``select`` takes the top-``budget`` of the agent's
scores. ``select-images`` runs the whole cycle in one process (``select_in_process``).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .base import Strategy


class MGRALStrategy(Strategy):
    name = "mgral"

    def score(self, model, pool, labeled_ids, device, batch_size) -> pd.DataFrame:
        from ..mgral.embeddings import pool_embeddings

        return pool_embeddings(model, pool, labeled_ids, device, batch_size, self.options)

    def select(self, scores: pd.DataFrame, budget: int, rng: np.random.Generator) -> list[int]:
        """Top-``budget`` of the agent's scores (deterministic, ties by image id)."""
        from ..io import InputError

        if scores.loc[~scores["labeled"], "score"].isna().all():
            raise InputError("mgral selects by the agent's scores (agent_scores.parquet of train-agent); this "
                             "table has none (the embeddings of score --strategy mgral)")
        return super().select(scores, budget, rng)

    def select_in_process(self, model, ckpt: dict, params: dict, pool, labeled, budget: int, seed: int, device,
                          batch_size: int) -> pd.DataFrame:
        """The agent's scores of ``pool`` (a DetectionDataset holding the labeled images' annotations)."""
        from ..mgral.steps import run_cycle

        scores, _ = run_cycle(params, self.options, model, ckpt, pool, labeled, pool.coco, pool.images_dir, budget,
                              seed, 0, device, batch_size)
        return scores
