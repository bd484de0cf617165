"""A synthetic validated COCO pool and the invariants every label merge must keep."""
from __future__ import annotations

import numpy as np

from activedet.data.coco import CocoData, validate_coco
from activedet.data.splits import check_partition, unlabeled_ids


def make_pool(n: int, seed: int = 0, id_offset: int = 100) -> CocoData:
    """A validated pool of ``n`` images with 0-3 boxes each; image ids are not 0..n-1 on purpose."""
    rng = np.random.default_rng(seed)
    images, anns = [], []
    order = rng.permutation(n)  # pool order differs from id order
    for k in order:
        iid = id_offset + 3 * int(k)
        images.append({"id": iid, "file_name": f"{iid}.png", "width": 50, "height": 40})
        for _ in range(int(rng.integers(0, 4))):
            x, y = float(rng.integers(0, 30)), float(rng.integers(0, 20))
            anns.append({"id": len(anns) + 1, "image_id": iid, "category_id": int(rng.integers(1, 4)),
                         "bbox": [x, y, float(rng.integers(1, 20)), float(rng.integers(1, 20))]})
    data = {"images": images, "annotations": anns,
            "categories": [{"id": c, "name": f"c{c}"} for c in (1, 2, 3)]}
    coco, warnings = validate_coco(data, "pool.json")
    assert warnings == []
    return coco


def gt_of(coco: CocoData, ids) -> dict[int, list]:
    by = coco.annotations_by_image()
    return {i: sorted((a["id"], a["category_id"], tuple(a["bbox"])) for a in by[i]) for i in ids}


def check_invariants(pool: CocoData, before: CocoData, merged: CocoData, selected: list[int], budget: int):
    ids = merged.image_ids
    assert len(ids) == len(set(ids))
    assert ids == sorted(ids)
    unl = unlabeled_ids(pool, merged)
    assert set(ids).isdisjoint(unl)
    assert set(ids) | set(unl) == set(pool.image_ids)
    assert len(ids) + len(unl) == len(pool.image_ids)
    assert len(ids) == len(before.image_ids) + budget
    assert set(before.image_ids) <= set(ids)                     # labeled only grows
    assert set(ids) - set(before.image_ids) == set(selected)     # exactly the selection is added
    # annotations of every labeled image (new and old) are the pool's ground truth, nothing else
    assert gt_of(merged, ids) == gt_of(pool, ids)
    assert {a["image_id"] for a in merged.annotations} <= set(ids)
    assert len(merged.annotations) == sum(len(v) for v in gt_of(pool, ids).values())
    check_partition(merged, pool, len(ids))
