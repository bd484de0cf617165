"""Image embeddings for MGRAL: global-average-pooled FPN features reduced to a fixed size by PCA."""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

    from ..data.dataset import DetectionDataset

EMBEDDING_DIM = 256


def pool_features(model, pool: DetectionDataset, device: torch.device, batch_size: int,
                  levels: list[int]) -> np.ndarray:
    """Pooled neck features of every pool image, in the dataset's order: [N, sum of the levels' channels]."""
    import torch

    from ..engine.predict import run_model
    from ..strategies.base import pooled_features

    feats: list[torch.Tensor] = []

    def on_batch(images, targets, out, dets):
        feats.append(pooled_features(out["features"], levels).cpu())

    run_model(model, pool, device, batch_size, on_batch, branches=(), return_features=True, detect=False)
    return torch.cat(feats).numpy().astype(np.float64)


def project(features: np.ndarray, dim: int = EMBEDDING_DIM) -> np.ndarray:
    """PCA of the features fitted on the rows given (the pool), scaled and padded to ``dim`` columns.

    sklearn's PCA (full SVD, deterministic signs) keeps at most ``min(n, d)`` components; when the
    features have fewer than ``dim`` dimensions (the tiny detector's 3 x 32 channels) the rest are
    zero columns, which change no distance. One scale for all columns (the first component's
    standard deviation becomes 1) keeps the LSTM's inputs near unit size and every distance's ratio.
    """
    from sklearn.decomposition import PCA

    x = np.asarray(features, dtype=np.float64)
    n, d = x.shape
    k = min(dim, n, d)
    z = PCA(n_components=k, svd_solver="full").fit_transform(x)
    scale = z[:, 0].std() if n > 1 else 0.0
    if scale > 0:
        z = z / scale
    out = np.zeros((n, dim), dtype=np.float32)
    out[:, :k] = z
    return out


def pool_embeddings(model, pool, labeled_ids: set[int], device, batch_size: int, options: dict):
    """MGRAL's scores table before the agent: one row per pool image (image_id, labeled), score NaN and the
    ``embedding`` column - pooled FPN features of ``options["feature_levels"]``, PCA to ``embedding_dim``."""
    from ..strategies.base import frame

    features = pool_features(model, pool, device, batch_size, options["feature_levels"])
    return frame(pool, labeled_ids, score=np.nan, embedding=list(project(features, options["embedding_dim"])))
