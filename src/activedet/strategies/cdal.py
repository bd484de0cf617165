"""CDAL (Agarwal et al., ECCV 2020): contextual diversity, selected by k-center greedy (CDAL-CS)."""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .base import Strategy, frame
from .coreset import k_center_greedy
from .entropy import detection_entropy

if TYPE_CHECKING:
    import torch

KL_EPS = 1e-12  # probabilities are clamped here before the log (an exact zero would make KL infinite)


def contextual_vectors(class_probs: torch.Tensor, image_idx: torch.Tensor, n_images: int) -> torch.Tensor:
    """Each image's entropy-weighted mean of its detections' class distributions: [n_images, C].

    ``class_probs`` [N, C] are the detections' per-class sigmoids, renormalised to distributions
    (as for the entropy strategy); ``image_idx`` [N] says whose detection each is. An image whose
    detections all have zero entropy gets their plain mean; an image without detections the
    uniform distribution (the detector says nothing about it).
    """
    import torch

    C = class_probs.shape[1]
    p = class_probs / class_probs.sum(-1, keepdim=True).clamp(min=1e-12)
    h = detection_entropy(class_probs)
    weighted = p.new_zeros(n_images, C).index_add(0, image_idx, h[:, None] * p)
    weight = p.new_zeros(n_images).index_add(0, image_idx, h)
    plain = p.new_zeros(n_images, C).index_add(0, image_idx, p)
    count = torch.bincount(image_idx, minlength=n_images).to(p.dtype)
    out = torch.where((weight > 0)[:, None], weighted / weight.clamp(min=1e-30)[:, None],
                      plain / count.clamp(min=1)[:, None])
    return torch.where((count > 0)[:, None], out, torch.full_like(out, 1.0 / C))


def symmetric_kl(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Pairwise ``KL(x_i || y_j) / 2 + KL(y_j || x_i) / 2`` for distributions x [n, C], y [m, C]: [n, m].

    Equals ``sum_k (x_ik - y_jk)(log x_ik - log y_jk) / 2``, so it is a few matrix products.
    """
    import torch

    lx, ly = torch.log(x.clamp(min=KL_EPS)), torch.log(y.clamp(min=KL_EPS))
    self_x, self_y = (x * lx).sum(1), (y * ly).sum(1)
    d = 0.5 * (self_x[:, None] + self_y[None, :] - x @ ly.T - lx @ y.T)
    return d.clamp(min=0.0)  # rounding can leave tiny negatives on identical rows


class CDALStrategy(Strategy):
    """Contextual diversity of the plain detector's detections; k-center greedy in that distance.

    The paper's class-specific form keeps one such vector per predicted class; here, as the
    pipeline issue specifies, one vector per image (all its detections together).
    """

    name = "cdal"

    def score(self, model, pool, labeled_ids, device, batch_size) -> pd.DataFrame:
        import torch

        from ..engine.predict import run_model

        thr = self.options.get("score_threshold", 0.05)  # the schema default, for checkpoints older than CDAL
        vectors: list[torch.Tensor] = []

        def on_batch(images, targets, out, dets):
            keep = [d["scores"] >= thr for d in dets]
            image_idx = torch.cat([torch.full((int(k.sum()),), b, dtype=torch.long, device=k.device)
                                   for b, k in enumerate(keep)])
            anchors = torch.cat([d["anchor_idx"][k] for d, k in zip(dets, keep)])
            probs = out["cls"].sigmoid()[image_idx, anchors].double()
            vectors.append(contextual_vectors(probs, image_idx, len(dets)).cpu())

        run_model(model, pool, device, batch_size, on_batch, branches=("cls", "reg"))
        v = torch.cat(vectors).numpy()
        return frame(pool, labeled_ids, score=np.nan, feature=list(v))

    def select(self, scores: pd.DataFrame, budget: int, rng: np.random.Generator) -> list[int]:
        import torch

        x = torch.from_numpy(np.stack(scores["feature"].to_numpy()).astype(np.float64))
        is_center = torch.from_numpy(scores["labeled"].to_numpy(dtype=bool, copy=True))
        chosen = k_center_greedy(x, is_center, budget, distance=symmetric_kl)
        return [int(scores["image_id"].iloc[i]) for i in chosen]
