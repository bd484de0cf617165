"""LL4AL training: the plain detector recipe plus the loss-prediction module's ranking loss.

The detector's loss, optimizer, schedule, batches and augmentation are the plain
trainer's (``engine.train.train_detector``); the module's ranking loss against each
image's detached detection loss is added with weight ``weight``. After the fraction
``detach_after`` of the iterations the module reads detached features, so from then
on it no longer shapes the detector (the paper: 120 of 200 epochs).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from ..data.dataset import DetectionDataset
from ..models.ll4al import ranking_loss
from .train import train_detector


class LL4ALObjective:
    """The LL4AL term of the training loss (see ``train_detector``'s ``objective``)."""

    method = "ll4al"
    needs_features = True

    def __init__(self, options: dict):
        self.options = {k: options[k] for k in ("weight", "margin", "detach_after")}

    def stop_iteration(self, total: int) -> int:
        """First iteration whose features reach the module detached."""
        return round(self.options["detach_after"] * total)

    def __call__(self, model, out: dict, losses: dict, iteration: int, total: int) -> tuple[torch.Tensor, dict]:
        features = out["features"]
        if iteration >= self.stop_iteration(total):
            features = [f.detach() for f in features]
        predicted = model.loss_module(features)
        loss = ranking_loss(predicted, losses["per_image"], self.options["margin"])
        return self.options["weight"] * loss, {"loss_ranking": float(loss.detach())}

    def clip_groups(self, model) -> list[list[torch.nn.Parameter]]:
        """Detector and module clipped apart: the module's gradient never scales the detector's."""
        module = {id(p) for p in model.loss_module.parameters()}
        return [[p for p in model.parameters() if id(p) not in module], list(model.loss_module.parameters())]


def train_ll4al(params: dict, dataset: DetectionDataset, out_path: str | Path, seed: int,
                state_path: str | Path | None = None, log: Callable[[str], None] | None = None,
                options: dict | None = None) -> dict:
    """Train the detector with LL4AL's module for one cycle; the checkpoint carries ``method: "ll4al"``.

    ``options`` are the LL4AL options (default ``strategies.ll4al``; a variant passes its own).
    """
    objective = LL4ALObjective(options or params["strategies"]["ll4al"])
    summary = train_detector(params, dataset, out_path, seed, state_path=state_path, log=log, objective=objective)
    summary["detach_iteration"] = objective.stop_iteration(summary["iterations"])
    return summary
