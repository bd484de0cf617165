"""The trainers of a cycle's model, keyed by a strategy's ``trainer`` (``Strategy.trainer``).

``python -m activedet train`` and the pipeline's one ``train`` rule dispatch here: the plain detector
(``detector``: random, entropy, Core-set, CDAL, EBAL, MGRAL and every ``eval_detector: plain`` curve),
MI-AOD's adversarial training on labeled + unlabeled images (``miaod``) and LL4AL's loss-prediction
module (``ll4al``). A method with its own trainer adds a function taking a :class:`TrainJob` and one
line in :data:`TRAINERS`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..data.coco import CocoData
from ..data.dataset import detector_dataset
from ..io import InputError


@dataclass
class TrainJob:
    """One cycle's training: validated params, the strategy's options, the labeled set (boxes > 0), the images
    folder, the pool (MI-AOD draws unlabeled images from it; None where no trainer needs it), the checkpoint
    to write, the seed and the resume-state path."""

    params: dict
    options: dict
    labeled: CocoData
    images: str | Path
    pool: CocoData | None
    out: str | Path
    seed: int
    state: str | Path


def train_plain(job: TrainJob) -> dict:
    """The plain detector (:func:`activedet.engine.train.train_detector`); the summary adds ``load_seconds``."""
    from .train import train_detector

    t0 = time.perf_counter()
    ds = detector_dataset(job.params, job.labeled, job.images)
    load_s = time.perf_counter() - t0
    summary = train_detector(job.params, ds, job.out, job.seed, state_path=job.state)
    summary["load_seconds"] = load_s
    return summary


def train_miaod_job(job: TrainJob) -> dict:
    """MI-AOD (:func:`activedet.engine.miaod.train_miaod`) on the labeled set and the unlabeled draw
    (:func:`activedet.cycle.draw_unlabeled`). Raises InputError without a pool or with no unlabeled image left."""
    from ..cycle import draw_unlabeled
    from .miaod import train_miaod

    if job.pool is None:
        raise InputError("train: MI-AOD draws unlabeled images from the pool: give --pool pool.json")
    unlabeled = draw_unlabeled(job.pool, job.labeled, job.options["unlabeled_ratio"], job.seed)
    ds_l = detector_dataset(job.params, job.labeled, job.images)
    ds_u = detector_dataset(job.params, unlabeled, job.images, ds_l.categories)
    return train_miaod(job.params, ds_l, ds_u, job.out, job.seed, state_path=job.state, options=job.options)


def train_ll4al_job(job: TrainJob) -> dict:
    """The detector with LL4AL's loss-prediction module (:func:`activedet.engine.ll4al.train_ll4al`)."""
    from .ll4al import train_ll4al

    ds = detector_dataset(job.params, job.labeled, job.images)
    return train_ll4al(job.params, ds, job.out, job.seed, state_path=job.state, options=job.options)


TRAINERS: dict[str, Callable[[TrainJob], dict]] = {
    "detector": train_plain,
    "miaod": train_miaod_job,
    "ll4al": train_ll4al_job,
}
