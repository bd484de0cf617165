"""COCO-style bbox evaluation (pycocotools) and the combined metric report."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Mapping, Sequence
from typing import Any

from .voc import voc_map

__all__ = ["COCO_STAT_NAMES", "coco_evaluate", "evaluate_detections"]

# Order of ``COCOeval.stats`` as produced by ``COCOeval.summarize()``.
COCO_STAT_NAMES: tuple[str, ...] = (
    "AP", "AP50", "AP75", "APs", "APm", "APl",
    "AR1", "AR10", "AR100", "ARs", "ARm", "ARl",
)


def _prepare_gt(gt: Mapping[str, Any]) -> dict[str, Any]:
    """Copy of ``gt`` with the fields pycocotools expects filled in.

    The caller's dict is never mutated: pycocotools writes into annotation
    dicts (e.g. ``COCOeval._prepare`` sets ``"ignore"``), so annotations are
    copied one by one; images/categories are only read and are shared.
    """
    out: dict[str, Any] = dict(gt)
    out.setdefault("info", {})
    out.setdefault("licenses", [])
    out["images"] = list(gt.get("images", []))
    out["categories"] = list(gt.get("categories", []))

    anns = [dict(a) for a in gt.get("annotations", [])]
    used_ids = {a["id"] for a in anns if "id" in a}
    next_id = max(used_ids, default=0) + 1
    for a in anns:
        if "area" not in a:
            # No segmentation here, so the box area is the object area.
            a["area"] = float(a["bbox"][2]) * float(a["bbox"][3])
        a.setdefault("iscrowd", 0)
        if "id" not in a:
            # COCOeval records matches by annotation id, so ids must be unique.
            a["id"] = next_id
            next_id += 1
    out["annotations"] = anns
    return out


def coco_evaluate(gt: Mapping[str, Any], detections: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Standard COCO bbox metrics via pycocotools, computed in memory.

    Returns the 12 ``COCOeval.stats`` as floats under the keys
    ``AP, AP50, AP75, APs, APm, APl, AR1, AR10, AR100, ARs, ARm, ARl``.
    Values are pycocotools' own, including -1 for undefined entries (e.g. no
    small objects in the ground truth), except that with zero detections
    (which ``loadRes`` cannot handle) every value is 0.0.
    ``ValueError`` if a detection's ``image_id`` is not in ``gt["images"]``.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if len(detections) == 0:
        return {name: 0.0 for name in COCO_STAT_NAMES}

    image_ids = {img["id"] for img in gt.get("images", [])}
    unknown = {d["image_id"] for d in detections} - image_ids
    if unknown:
        raise ValueError(f"detections refer to image ids not in gt: {sorted(unknown)[:10]}")

    # loadRes overwrites "id"/"area"/"iscrowd" in each result dict: copy them.
    # It also insists on a ``list``.
    results = [dict(d) for d in detections]

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = _prepare_gt(gt)
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(results)
        coco_eval = COCOeval(coco_gt, coco_dt, iouType="bbox")
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()

    return {name: float(v) for name, v in zip(COCO_STAT_NAMES, coco_eval.stats)}


def evaluate_detections(gt: Mapping[str, Any], detections: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """All detection metrics the project reports, in one dict.

    Keys: ``map50`` (= ``map50_voc07``, the learning-curve metric),
    ``map50_voc07`` (VOC2007 11-point mAP@0.5), ``map50_area`` (VOC2010+ area
    mAP@0.5), ``coco_ap`` (AP@[.5:.95]), ``coco_ap50``, ``coco`` (all 12 COCO
    stats), ``per_class_ap50`` (VOC07 AP@0.5 per category id with positives),
    ``n_images``, ``n_detections``.
    """
    voc07 = voc_map(gt, detections, iou_threshold=0.5, use_07_metric=True)
    voc_area = voc_map(gt, detections, iou_threshold=0.5, use_07_metric=False)
    coco = coco_evaluate(gt, detections)
    return {
        "map50": voc07["map"],
        "map50_voc07": voc07["map"],
        "map50_area": voc_area["map"],
        "coco_ap": coco["AP"],
        "coco_ap50": coco["AP50"],
        "coco": coco,
        "per_class_ap50": voc07["per_class"],
        "n_images": len(gt.get("images", [])),
        "n_detections": len(detections),
    }
