"""The rules of one active-learning cycle, shared by every caller: the pipeline's steps
(``python -m activedet score / select / merge / train``), the human-in-the-loop commands and MGRAL.

- What a strategy may see of the pool: the labeled images' boxes, never a box of an unlabeled image
  (:func:`visible_pool`).
- The budget check (:func:`check_budget`).
- MI-AOD's draw of unlabeled training images (:func:`draw_unlabeled`).
- Scoring the pool and picking a batch (:func:`score_pool`, :func:`select_batch`).
- :class:`Selection`, the one reader and writer of ``selected.json``.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .data.coco import CocoData
from .io import InputError, read_json, write_json


def check_budget(budget: int, n_unlabeled: int | None, where, what: str = "the unlabeled pool") -> None:
    """Refuse a budget below 1 or above the ``n_unlabeled`` images left; InputError naming ``where``.

    ``n_unlabeled`` None checks the budget alone (before the pool is known). The pipeline's wording
    (``what`` the default) names the params to change; another caller names its own images (``what``,
    e.g. "the unlabeled images of <folder>").
    """
    if budget < 1:
        raise InputError(f"--budget must be at least 1, got {budget}")
    if n_unlabeled is not None and budget > n_unlabeled:
        if what == "the unlabeled pool":
            raise InputError(f"{where}: active.budget ({budget}) is larger than the unlabeled pool "
                             f"({n_unlabeled} images left); lower active.budget or active.cycles")
        raise InputError(f"--budget ({budget}) is larger than {what} ({n_unlabeled})")


def visible_pool(pool: CocoData, labeled: CocoData) -> CocoData:
    """The pool as a strategy may see it: every image, and only the labeled set's boxes.

    The pool file may hold the oracle's ground truth (simulation) or lack the labels people imported
    (human mode); either way a strategy reads the boxes of the labeled file and of no unlabeled image.
    """
    in_pool = set(pool.image_ids)
    return CocoData(pool.path, pool.images, [a for a in labeled.annotations if a["image_id"] in in_pool],
                    pool.categories, pool.info)


def draw_unlabeled(pool: CocoData, labeled: CocoData, ratio: float, seed: int) -> CocoData:
    """MI-AOD's unlabeled training images: ``round(ratio x |labeled|)`` pool images outside the labeled set
    (at least 1, at most all of them), drawn by ``(seed, |labeled|)``, entering training without annotations.

    Released MI-AOD code: the unlabeled set of a cycle is the unlabeled pool (subsampled to a ratio of the
    labeled set here, ``strategies.miaod.unlabeled_ratio``). Raises InputError when none is left.
    """
    from .data.splits import unlabeled_ids

    unl = unlabeled_ids(pool, labeled)
    n = min(len(unl), max(1, round(len(labeled.images) * ratio)))
    if n == 0:
        raise InputError(f"{pool.path}: no unlabeled images left for MI-AOD's unlabeled training")
    chosen = sorted(int(i) for i in np.random.default_rng([seed, len(labeled.images)]).choice(unl, n, replace=False))
    return CocoData(pool.path, pool.subset(chosen).images, [], pool.categories, pool.info)


class PoolIds:
    """Stand-in for a dataset when a strategy needs only the image ids (random): no image is decoded."""

    def __init__(self, coco: CocoData):
        self.records = [(im, None, None, None) for im in coco.images]


def score_pool(strategy, pool: CocoData, labeled: CocoData, images_dir, model_path, device, batch_size: int,
               dataset_factory):
    """The strategy's acquisition scores of ``pool`` (a DataFrame: image_id, labeled, score, ...) and the seconds
    the scoring took.

    ``dataset_factory(coco, categories)`` builds the detector's dataset of the pool's images (params decide
    size and caching). The strategy sees :func:`visible_pool`; a strategy that needs a model gets the checkpoint
    ``model_path`` after :meth:`Strategy.check_model`. Raises InputError when a model is needed and not given.
    """
    pool = visible_pool(pool, labeled)
    model = None
    if strategy.needs_model:
        from .checkpoint import load_model

        if not model_path:
            raise InputError(f"--strategy {strategy.name} scores with a trained detector: give --model model.pt")
        model, ckpt = load_model(model_path, device)
        strategy.check_model(ckpt, model_path)
        ds = dataset_factory(pool, ckpt["categories"])
    else:
        ds = PoolIds(pool)
    t0 = time.perf_counter()
    scores = strategy.score(model, ds, set(labeled.image_ids), device, batch_size)
    return scores, time.perf_counter() - t0


@dataclass
class Selection:
    """A cycle's batch: the images to label next in rank order, with their acquisition scores.

    ``selected.json``: ``{strategy, seed, cycle, budget, seconds, selected: [{image_id, rank, score}]}``
    (rank from 1; score null where the strategy gives none). Read and written here only.
    """

    strategy: str
    image_ids: list[int]
    scores: list[float | None]
    seed: int | None = None
    cycle: int | None = None
    budget: int | None = None
    seconds: float | None = None
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_scores(cls, strategy: str, chosen: list[int], scores, **meta) -> Selection:
        """The chosen ids in order, with their score in the ``scores`` table (NaN becomes None)."""
        by_id = scores.set_index("image_id")["score"]
        values = [float(by_id[i]) for i in chosen]
        return cls(strategy, [int(i) for i in chosen], [None if math.isnan(v) else v for v in values], **meta)

    def to_dict(self) -> dict:
        return {"strategy": self.strategy, "seed": self.seed, "cycle": self.cycle, "budget": self.budget,
                "seconds": self.seconds, **self.extra,
                "selected": [{"image_id": i, "rank": r + 1, "score": s}
                             for r, (i, s) in enumerate(zip(self.image_ids, self.scores))]}

    def write(self, path) -> None:
        write_json(path, self.to_dict())

    @classmethod
    def read(cls, path) -> Selection:
        """The selection in ``path``, in rank order; InputError naming the file when it is not one."""
        sel = read_json(path)
        try:
            rows = sorted(sel["selected"], key=lambda s: int(s.get("rank", 0)))
            ids = [int(s["image_id"]) for s in rows]
            scores = [None if s.get("score") is None else float(s["score"]) for s in rows]
            meta = {k: sel.get(k) for k in ("seed", "cycle", "budget", "seconds")}
            extra = {k: v for k, v in sel.items() if k not in {"strategy", "selected", *meta}}
            return cls(str(sel.get("strategy", "?")), ids, scores, **meta, extra=extra)
        except (KeyError, TypeError, ValueError, AttributeError):
            raise InputError(f"{path}: expected {{'selected': [{{'image_id': ..., 'rank': ..., 'score': ...}}, ...]}}"
                             f" (the select step writes it)") from None

    def __len__(self) -> int:
        return len(self.image_ids)


def select_batch(params: dict, strategy_name: str, scores, budget: int, seed: int, cycle: int, where) -> Selection:
    """The next batch from a scores table: checks the budget, then the strategy (or variant) ``strategy_name``
    picks with the generator ``(seed, cycle)``, so every strategy's randomness is fixed per seed and cycle."""
    from .strategies import build_strategy

    check_budget(budget, int((~scores["labeled"]).sum()), where)
    strategy = build_strategy(strategy_name, params)
    rng = np.random.default_rng([seed, cycle])
    t0 = time.perf_counter()
    chosen = strategy.select(scores, budget, rng)
    return Selection.from_scores(strategy_name, chosen, scores, seed=seed, cycle=cycle, budget=budget,
                                 seconds=time.perf_counter() - t0)


def read_selected_ids(path) -> list[int]:
    """Image ids of a ``selected.json``, in rank order."""
    return Selection.read(Path(path)).image_ids
