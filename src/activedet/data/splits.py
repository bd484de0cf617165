"""Labeled / unlabeled splits of a pool and the label merge with its invariants.

A labeled set is a COCO JSON holding the labeled images and their annotations;
the unlabeled set is the rest of the pool. Merging checks, loudly, that the
split stays a partition of the pool and grows by exactly the budget.
"""
from __future__ import annotations

import numpy as np

from ..io import InputError
from .coco import CocoData


def initial_split(pool: CocoData, size: int, seed: int, duplicate_images: str = "error") -> CocoData:
    """``size`` images drawn uniformly from the pool (depends only on the pool ids and the seed).

    One image, one identity: a pool listing the same ``file_name`` under two ids raises InputError
    (``duplicate_images="error"``) or is reported with a warning (``"warn"``); content duplicates are
    found by :func:`activedet.data.checks.check_dataset`, which reads the images.
    """
    from .checks import path_duplicates  # file names only: the same name is the same file in one folder

    dup = path_duplicates(pool, ".")
    if dup and duplicate_images != "warn":
        raise InputError("\n".join(d + " (dataset.duplicate_images: warn accepts it)" for d in dup[:20]))
    for d in dup:
        print(f"warning: {d}")
    ids = sorted(pool.image_ids)
    if size > len(ids):
        raise InputError(f"{pool.path}: active.initial_labeled ({size}) is larger than the pool ({len(ids)} images)")
    if size < 1:
        raise InputError(f"active.initial_labeled must be at least 1, got {size}")
    rng = np.random.default_rng(seed)
    chosen = sorted(int(i) for i in rng.choice(ids, size=size, replace=False))
    return pool.subset(chosen)


def unlabeled_ids(pool: CocoData, labeled: CocoData) -> list[int]:
    labeled_ids = set(labeled.image_ids)
    return [i for i in pool.image_ids if i not in labeled_ids]


def merge_labels(labeled: CocoData, selected_ids: list[int], oracle: CocoData, budget: int,
                 source: str | None = None) -> CocoData:
    """The labeled set plus the selected images with their annotations from ``oracle``.

    Invariants (each failure raises): the selection has exactly ``budget``
    distinct images, none already labeled, all in the pool; the labeled set is
    a subset of the pool; the merged annotations of every newly labeled image
    equal the oracle's. ``source`` (the selection file) prefixes the selection's errors.
    """
    where = f"{source}: " if source else ""
    pool_ids = set(oracle.image_ids)
    labeled_ids = set(labeled.image_ids)
    if not labeled_ids <= pool_ids:
        raise InputError(f"{labeled.path}: labeled images {sorted(labeled_ids - pool_ids)[:10]} are not in the pool")
    if len(set(selected_ids)) != len(selected_ids):
        dup = sorted({i for i in selected_ids if selected_ids.count(i) > 1})
        raise InputError(f"{where}selection names images more than once: {dup[:10]}")
    if len(selected_ids) != budget:
        raise InputError(f"{where}selection has {len(selected_ids)} images but the budget is {budget}")
    again = sorted(set(selected_ids) & labeled_ids)
    if again:
        raise InputError(f"{where}selection contains already labeled images: {again[:10]}")
    unknown = sorted(set(selected_ids) - pool_ids)
    if unknown:
        raise InputError(f"{where}selection contains images not in the pool: {unknown[:10]}")
    new = oracle.subset(selected_ids)
    merged_ids = sorted(labeled_ids | set(selected_ids))
    by_id = {im["id"]: im for im in labeled.images + new.images}
    merged = CocoData(labeled.path, [by_id[i] for i in merged_ids],
                      sorted(labeled.annotations + new.annotations, key=lambda a: (a["image_id"], a["id"])),
                      labeled.categories, labeled.info)
    check_partition(merged, oracle, len(labeled_ids) + budget)
    return merged


def check_partition(labeled: CocoData, pool: CocoData, expected_size: int | None = None) -> None:
    """Labeled ⊆ pool, no duplicates, expected size, annotations of labeled images equal the pool's."""
    ids = labeled.image_ids
    if len(set(ids)) != len(ids):
        raise InputError(f"{labeled.path}: labeled set lists an image twice")
    if expected_size is not None and len(ids) != expected_size:
        raise InputError(f"{labeled.path}: labeled set has {len(ids)} images, expected {expected_size}")
    pool_ids = set(pool.image_ids)
    if not set(ids) <= pool_ids:
        raise InputError(f"{labeled.path}: labeled images outside the pool: {sorted(set(ids) - pool_ids)[:10]}")
    want = pool.subset(ids).annotations_by_image()
    have = labeled.annotations_by_image()
    for i in ids:
        key = lambda a: (a["category_id"], tuple(round(v, 4) for v in a["bbox"]))  # noqa: E731
        if sorted(map(key, have[i])) != sorted(map(key, want[i])):
            raise InputError(f"{labeled.path}: annotations of image {i} differ from the pool's ground truth")
