"""MI-AOD selection: top-k mean of the two adversarial classifiers' discrepancy per image."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .base import Strategy, frame
from .random import RandomStrategy


class MIAODStrategy(Strategy):
    """Scores the pool with an MI-AOD detector (trained by its own rule, ``train-miaod``).

    Per anchor ``mean_c (σ(f1) − σ(f2))²`` (or |·| with ``squared: false``); the image score
    is the mean of its top-k anchors (or the max, for Table 1's ablation). With
    ``image_score: random`` (Table 1's random rows) the scores are still computed and written, but
    :meth:`select` draws the batch uniformly with the selection step's generator, seeded from
    (seed, cycle) as the ``random`` strategy's, so seeds differ and a rerun repeats its picks.
    The MIL weights are not applied at selection, as in the released code.
    """

    name = "miaod"
    trainer = "miaod"

    def score(self, model, pool, labeled_ids, device, batch_size) -> pd.DataFrame:
        import torch

        from ..engine.predict import run_model
        from ..models.miaod import image_uncertainty, instance_uncertainty

        o = self.options
        scores: list[torch.Tensor] = []

        def on_batch(images, targets, out, dets):
            u = instance_uncertainty(out["cls"], out["cls2"], squared=o["squared"])
            scores.append(image_uncertainty(u, o["topk"], "max" if o["image_score"] == "max" else "mean").cpu())

        run_model(model, pool, device, batch_size, on_batch, branches=("cls", "cls2"), detect=False)
        values = torch.cat(scores).numpy().astype(float)
        df = frame(pool, labeled_ids, score=values)
        df.loc[df["labeled"], "score"] = np.nan
        return df

    def select(self, scores: pd.DataFrame, budget: int, rng: np.random.Generator) -> list[int]:
        """Top-``budget`` scores; with ``image_score: random`` a uniform draw by ``rng`` (the random strategy's rule)."""
        if self.options.get("image_score") == "random":
            return RandomStrategy.select(self, scores, budget, rng)
        return super().select(scores, budget, rng)
