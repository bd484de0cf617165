"""LL4AL (Yoo & Kweon, CVPR 2019): the images whose predicted detection loss is largest."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .base import Strategy, frame


class LL4ALStrategy(Strategy):
    """Scores the pool with the loss-prediction module of an LL4AL model (trained by ``train-ll4al``).

    The score is the module's predicted loss of each image; ``select`` takes the top ``budget``.
    The authors first draw a random subset of the pool (10,000 images); here the whole pool is scored.
    """

    name = "ll4al"
    trainer = "ll4al"

    def score(self, model, pool, labeled_ids, device, batch_size) -> pd.DataFrame:
        import torch

        from ..engine.predict import run_model

        predicted: list[torch.Tensor] = []

        def on_batch(images, targets, out, dets):
            predicted.append(model.loss_module(out["features"]).float().cpu())

        run_model(model, pool, device, batch_size, on_batch, branches=(), return_features=True, detect=False)
        df = frame(pool, labeled_ids, score=torch.cat(predicted).numpy().astype(float))
        df.loc[df["labeled"], "score"] = np.nan
        return df
