"""MGRAL's lookup table: records (candidate batch -> proxy mAP) and the Wasserstein-weighted reward.

A batch is the uniform distribution over its images' embeddings; two batches are compared by
the 2-Wasserstein distance. Solvers (``strategies.mgral.solver``):

- ``exact``: POT's network simplex ``ot.emd2`` on the squared-Euclidean cost, square-rooted.
- ``sliced``: the sliced 2-Wasserstein distance over fixed random directions. The table's
  projections are sorted once when a record enters, so a query costs one projection and one sort
  for all records together; POT's ``ot.sliced_wasserstein_distance`` recomputes both sides per
  pair, which is what makes it slower here (tests check the two agree on the same directions).
- ``sinkhorn``: POT's entropic ``ot.sinkhorn2`` (cost normalised by its maximum, ``sinkhorn_reg``).

The reward estimate: distances to every record, the ``nearest`` closest weighted by 1/distance,
the weighted mean of their mAPs. The threshold is the mean minus one standard deviation of the
pairwise distances between the records the table was built with; a batch whose nearest record
lies strictly beyond it is rated by a real proxy run instead, whose result joins the table.
"""
from __future__ import annotations

import numpy as np

SOLVERS = ("exact", "sliced", "sinkhorn")


def _uniform(n: int) -> np.ndarray:
    return np.full(n, 1.0 / n)


def wasserstein(x: np.ndarray, y: np.ndarray, solver: str = "exact", projections: np.ndarray | None = None,
                sinkhorn_reg: float = 0.05) -> float:
    """2-Wasserstein distance between the uniform point sets ``x`` [n, d] and ``y`` [m, d], with POT."""
    import ot

    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if solver == "sliced":
        if projections is None:
            raise ValueError("the sliced solver needs its projections [d, n_projections]")
        return float(ot.sliced_wasserstein_distance(x, y, _uniform(len(x)), _uniform(len(y)),
                                                    projections=projections, p=2))
    cost = ot.dist(x, y, metric="sqeuclidean")
    if solver == "exact":
        # numItermax well above the default: batches of ~1000 images need more simplex pivots.
        w2 = ot.emd2(_uniform(len(x)), _uniform(len(y)), cost, numItermax=10_000_000)
    elif solver == "sinkhorn":
        top = float(cost.max())
        if top == 0.0:
            return 0.0
        w2 = top * float(ot.sinkhorn2(_uniform(len(x)), _uniform(len(y)), cost / top, sinkhorn_reg,
                                      numItermax=10_000))
    else:
        raise ValueError(f"unknown solver {solver!r} (known: {', '.join(SOLVERS)})")
    return float(np.sqrt(max(float(w2), 0.0)))


def random_projections(dim: int, n_projections: int, seed: int) -> np.ndarray:
    """Unit directions [dim, n_projections], the same for a given seed (POT's own recipe, seeded by numpy)."""
    p = np.random.default_rng(seed).normal(size=(dim, n_projections))
    return p / np.linalg.norm(p, axis=0, keepdims=True)


def inverse_distance_estimate(distances: np.ndarray, maps: np.ndarray, nearest: int) -> float:
    """Weighted mean of the ``nearest`` closest records' mAPs, weights 1/distance.

    A record at distance 0 is the same batch: the mean of such records' mAPs is returned.
    """
    d, m = np.asarray(distances, dtype=np.float64), np.asarray(maps, dtype=np.float64)
    exact = d == 0.0
    if exact.any():
        return float(m[exact].mean())
    idx = np.argsort(d, kind="stable")[:max(1, nearest)]
    w = 1.0 / d[idx]
    return float((w * m[idx]).sum() / w.sum())


class LookupTable:
    """Records (embedding set of a batch, proxy mAP) and the reward estimate of a new batch."""

    def __init__(self, batches: list[np.ndarray], maps: list[float], solver: str = "sliced", nearest: int = 3,
                 n_projections: int = 128, sinkhorn_reg: float = 0.05, seed: int = 0):
        if len(batches) != len(maps):
            raise ValueError(f"{len(batches)} record batches but {len(maps)} mAPs")
        if len(batches) < 2:
            raise ValueError("a lookup table needs at least 2 records (its threshold compares records)")
        if solver not in SOLVERS:
            raise ValueError(f"unknown solver {solver!r} (known: {', '.join(SOLVERS)})")
        self.solver, self.nearest, self.sinkhorn_reg = solver, nearest, sinkhorn_reg
        dim = np.asarray(batches[0]).shape[1]
        self.projections = random_projections(dim, n_projections, seed) if solver == "sliced" else None
        self.batches: list[np.ndarray] = []
        self.maps: list[float] = []
        # sliced: each record's sorted projections, flattened [b * n_projections]; stacked on first use
        self._flat: list[np.ndarray] = []
        self._matrix: np.ndarray | None = None
        self._sq: np.ndarray | None = None
        for x, m in zip(batches, maps):
            self.add(x, m)
        pair = self.pairwise_distances()
        upper = pair[np.triu_indices(len(self.batches), k=1)]
        # Fixed at construction: later fallback records do not move the threshold.
        self.threshold = float(upper.mean() - upper.std())
        self.initial_records = len(self.batches)

    @property
    def mean_map(self) -> float:
        return float(np.mean(self.maps))

    def add(self, batch: np.ndarray, map50: float) -> None:
        x = np.asarray(batch, dtype=np.float64)
        self.batches.append(x)
        self.maps.append(float(map50))
        if self.projections is not None:
            self._flat.append(np.sort(x @ self.projections, axis=0).ravel())
            self._matrix = None

    def distance(self, x: np.ndarray, y: np.ndarray) -> float:
        return wasserstein(x, y, self.solver, self.projections, self.sinkhorn_reg)

    def distances(self, batch: np.ndarray) -> np.ndarray:
        """Distance of ``batch`` [b, d] to every record, [R]."""
        x = np.asarray(batch, dtype=np.float64)
        if self._sliced_fast(len(x)):
            # Equal sizes, uniform weights: per direction W2^2 is the mean squared difference of the sorted
            # values; over all directions |r - q|^2 / size = (|r|^2 - 2 r.q + |q|^2) / size, one mat-vec
            # for all records instead of an [R, b, n_projections] difference array.
            q = np.sort(x @ self.projections, axis=0).ravel()
            d2 = (self._sq - 2.0 * (self._matrix @ q) + q @ q) / q.size
            return np.sqrt(np.maximum(d2, 0.0))
        return np.array([self.distance(x, r) for r in self.batches])

    def _sliced_fast(self, n_images: int) -> bool:
        """True (and the stacked records ready) when the sliced solver can take the one-mat-vec path."""
        if self.projections is None or any(f.size != n_images * self.projections.shape[1] for f in self._flat):
            return False
        if self._matrix is None:
            self._matrix = np.stack(self._flat)
            self._sq = np.einsum("ij,ij->i", self._matrix, self._matrix)
        return True

    def pairwise_distances(self) -> np.ndarray:
        n = len(self.batches)
        if self._sliced_fast(len(self.batches[0])):  # the Gram matrix of the sorted projections
            d2 = (self._sq[:, None] + self._sq[None, :] - 2.0 * (self._matrix @ self._matrix.T)) / self._matrix.shape[1]
            out = np.sqrt(np.maximum(d2, 0.0))
            np.fill_diagonal(out, 0.0)
            return out
        out = np.zeros((n, n))
        for i in range(n):
            for j in range(i + 1, n):
                out[i, j] = out[j, i] = self.distance(self.batches[i], self.batches[j])
        return out

    def estimate(self, batch: np.ndarray) -> tuple[float, float]:
        """(reward estimate, distance to the nearest record)."""
        d = self.distances(batch)
        return inverse_distance_estimate(d, np.array(self.maps), self.nearest), float(d.min())

    def beyond_threshold(self, nearest_distance: float) -> bool:
        return nearest_distance > self.threshold


class TableReward:
    """The agent's reward: the table's estimate, or a real proxy run when the batch lies beyond the threshold.

    ``proxy(indices) -> mAP`` runs the proxy on the batch; its result joins the table. At most
    ``max_fallbacks`` proxy runs: after that an out-of-range batch keeps the table's estimate and
    is counted in ``beyond_without_fallback``.
    """

    def __init__(self, table: LookupTable, embeddings: np.ndarray, proxy=None, max_fallbacks: int = 0):
        self.table, self.embeddings = table, np.asarray(embeddings, dtype=np.float64)
        self.proxy, self.max_fallbacks = proxy, max_fallbacks
        self.fallbacks: list[dict] = []
        self.lookups = 0
        self.lookup_seconds = 0.0
        self.beyond_without_fallback = 0

    def __call__(self, indices: np.ndarray) -> float:
        import time

        idx = np.asarray(indices)
        batch = self.embeddings[idx]
        t0 = time.perf_counter()
        estimate, nearest = self.table.estimate(batch)
        self.lookup_seconds += time.perf_counter() - t0
        self.lookups += 1
        if not self.table.beyond_threshold(nearest):
            return estimate
        if self.proxy is None or len(self.fallbacks) >= self.max_fallbacks:
            self.beyond_without_fallback += 1
            return estimate
        t0 = time.perf_counter()
        map50 = float(self.proxy(idx))
        self.table.add(batch, map50)
        self.fallbacks.append({"indices": sorted(int(i) for i in idx), "map50": map50, "table_estimate": estimate,
                               "nearest_distance": nearest, "seconds": time.perf_counter() - t0})
        return map50
