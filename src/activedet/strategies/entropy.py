"""Entropy of the detections' class distributions, aggregated per image."""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .base import Strategy, frame

if TYPE_CHECKING:
    import torch


def detection_entropy(class_probs: torch.Tensor) -> torch.Tensor:
    """Shannon entropy (nats) of each detection's class distribution [N, C] -> [N].

    The classifiers are per-class sigmoids, so each anchor's C probabilities are
    renormalised to a distribution before taking the entropy.
    """
    import torch

    p = class_probs / class_probs.sum(-1, keepdim=True).clamp(min=1e-12)
    return -(p * torch.log(p.clamp(min=1e-12))).sum(-1)


def aggregate(values: torch.Tensor, how: str) -> float:
    """Image score from its detections' entropies; an image without detections scores 0."""
    if values.numel() == 0:
        return 0.0
    return float({"mean": values.mean, "max": values.max, "sum": values.sum}[how]())


class EntropyStrategy(Strategy):
    name = "entropy"

    def score(self, model, pool, labeled_ids, device, batch_size) -> pd.DataFrame:
        from ..engine.predict import run_model

        how, thr = self.options.get("aggregate", "mean"), self.options.get("score_threshold", 0.05)
        scores: list[float] = []

        def on_batch(images, targets, out, dets):
            probs = out["cls"].sigmoid()
            for b, d in enumerate(dets):
                keep = d["scores"] >= thr
                scores.append(aggregate(detection_entropy(probs[b, d["anchor_idx"][keep]]), how))

        run_model(model, pool, device, batch_size, on_batch, branches=("cls", "reg"))
        df = frame(pool, labeled_ids, score=scores)
        df.loc[df["labeled"], "score"] = np.nan
        return df
