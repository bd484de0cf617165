"""PASCAL VOC detection metrics (AP per class and mAP), devkit semantics.

The algorithm follows the official VOC devkit (``VOCevaldet.m``) and its
Python port in py-faster-rcnn (``lib/datasets/voc_eval.py``), with two
deliberate differences:

* boxes are continuous xywh coordinates (the project-wide COCO convention),
  so IoU is computed *without* the devkit's ``+1`` pixel-width term;
* detections are ranked with a stable sort, so ties keep their input order
  and results are reproducible (the devkit's ``np.argsort`` is not stable).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["ap_from_matches", "class_matches", "match_detections", "subset_map", "voc_ap", "voc_map"]


def voc_ap(recall: np.ndarray, precision: np.ndarray, use_07_metric: bool) -> float:
    """Average precision from a ranked list's cumulative recall / precision.

    ``use_07_metric=True``: VOC2007 11-point interpolated AP, the mean over
    ``t in {0, 0.1, ..., 1}`` of the maximum precision at recall >= t
    (0 if no such recall).  ``False``: VOC2010+ "area" AP, the exact area under
    the monotonically non-increasing precision envelope.
    """
    rec = np.asarray(recall, dtype=np.float64)
    prec = np.asarray(precision, dtype=np.float64)
    if use_07_metric:
        ap = 0.0
        # np.arange (not linspace) on purpose: it reproduces the reference
        # thresholds bit for bit, e.g. 0.30000000000000004.
        for t in np.arange(0.0, 1.1, 0.1):
            mask = rec >= t
            p = float(np.max(prec[mask])) if mask.any() else 0.0
            ap += p / 11.0
        return float(ap)

    # Sentinels so the envelope starts at recall 0 and ends at recall 1.
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    # Precision envelope: running maximum from the right.
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    # Sum rectangles only where recall changes.
    idx = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[idx + 1] - mrec[idx]) * mpre[idx + 1]))


def _xywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    out = boxes.astype(np.float64, copy=True).reshape(-1, 4)
    out[:, 2] += out[:, 0]
    out[:, 3] += out[:, 1]
    return out


def _iou_one_to_many(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one xyxy box against an (N, 4) xyxy array.

    Continuous coordinates: width is ``x2 - x1``, NOT the devkit's
    ``x2 - x1 + 1`` (which assumes inclusive integer pixel indices).
    """
    iw = np.maximum(np.minimum(boxes[:, 2], box[2]) - np.maximum(boxes[:, 0], box[0]), 0.0)
    ih = np.maximum(np.minimum(boxes[:, 3], box[3]) - np.maximum(boxes[:, 1], box[1]), 0.0)
    inter = iw * ih
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area + areas - inter
    # Degenerate (zero-area) pairs get IoU 0 rather than a division warning.
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def match_detections(
    gt_by_image: Mapping[Any, tuple[np.ndarray, np.ndarray]],
    dets: Sequence[Mapping[str, Any]],
    iou_threshold: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Devkit matching of one class's detections: ``(order, tp, fp)``.

    ``order`` [N] ranks ``dets`` by score (stable, descending); ``tp`` / ``fp`` [N] (0/1, float64) flag
    the ranked detections; a detection on a difficult GT is neither. A detection's flags depend only on
    the detections of its own image, so they hold for any subset of images that contains it (used to
    resample test images without matching again).
    """
    scores = np.array([float(d["score"]) for d in dets], dtype=np.float64)
    order = np.argsort(-scores, kind="stable")
    matched = {img: np.zeros(len(ign), dtype=bool) for img, (_, ign) in gt_by_image.items()}
    tp = np.zeros(len(dets), dtype=np.float64)
    fp = np.zeros(len(dets), dtype=np.float64)

    for rank, di in enumerate(order):
        det = dets[di]
        entry = gt_by_image.get(det["image_id"])
        if entry is None or len(entry[0]) == 0:
            fp[rank] = 1.0
            continue
        gt_boxes, ignore = entry
        box = _xywh_to_xyxy(np.asarray(det["bbox"], dtype=np.float64))[0]
        ious = _iou_one_to_many(box, gt_boxes)
        # Devkit: take the best-overlapping GT regardless of whether it is
        # already matched; strict ">" threshold as in VOCevaldet.m.
        j = int(np.argmax(ious))
        if ious[j] > iou_threshold:
            if ignore[j]:
                continue  # difficult GT: neither TP nor FP
            if not matched[det["image_id"]][j]:
                tp[rank] = 1.0
                matched[det["image_id"]][j] = True
            else:
                fp[rank] = 1.0  # duplicate detection of a matched GT
        else:
            fp[rank] = 1.0
    return order, tp, fp


def ap_from_matches(tp: np.ndarray, fp: np.ndarray, npos: int, use_07_metric: bool) -> float:
    """AP of ranked TP / FP flags [N] against ``npos`` (> 0) non-ignored positives."""
    tp_cum = np.cumsum(tp)
    fp_cum = np.cumsum(fp)
    recall = tp_cum / float(npos)
    # eps guard: ranks where only ignored detections were seen have tp+fp == 0.
    precision = tp_cum / np.maximum(tp_cum + fp_cum, np.finfo(np.float64).eps)
    return voc_ap(recall, precision, use_07_metric)


def _class_ap(
    gt_by_image: Mapping[Any, tuple[np.ndarray, np.ndarray]],
    dets: Sequence[Mapping[str, Any]],
    iou_threshold: float,
    use_07_metric: bool,
) -> float | None:
    """AP of one class; ``None`` when the class has no non-ignored positives."""
    npos = int(sum(int((~ignore).sum()) for _, ignore in gt_by_image.values()))
    if npos == 0:
        return None
    _, tp, fp = match_detections(gt_by_image, dets, iou_threshold)
    return ap_from_matches(tp, fp, npos, use_07_metric)


def _by_class(gt: Mapping[str, Any], detections: Sequence[Mapping[str, Any]]
              ) -> dict[Any, tuple[dict[Any, tuple[np.ndarray, np.ndarray]], list[Mapping[str, Any]]]]:
    """Per category of ``gt``: (image -> (GT boxes xyxy [M, 4], ignore flags [M]), its detections)."""
    image_ids = {img["id"] for img in gt.get("images", [])}
    cat_ids = [c["id"] for c in gt.get("categories", [])]

    unknown = {d["image_id"] for d in detections} - image_ids
    if unknown:
        raise ValueError(f"detections refer to image ids not in gt: {sorted(unknown)[:10]}")

    # category -> image -> ([boxes], [ignore flags])
    boxes_acc: dict[Any, dict[Any, tuple[list, list]]] = defaultdict(lambda: defaultdict(lambda: ([], [])))
    for ann in gt.get("annotations", []):
        if ann["image_id"] not in image_ids:
            continue
        boxes, flags = boxes_acc[ann["category_id"]][ann["image_id"]]
        boxes.append(ann["bbox"])
        flags.append(bool(ann.get("difficult", 0)) or bool(ann.get("iscrowd", 0)))

    dets_by_cat: dict[Any, list[Mapping[str, Any]]] = defaultdict(list)
    for d in detections:
        dets_by_cat[d["category_id"]].append(d)

    return {cid: ({img: (_xywh_to_xyxy(np.asarray(b, dtype=np.float64)), np.asarray(f, dtype=bool))
                   for img, (b, f) in boxes_acc.get(cid, {}).items()}, dets_by_cat.get(cid, []))
            for cid in cat_ids}


def class_matches(gt: Mapping[str, Any], detections: Sequence[Mapping[str, Any]], iou_threshold: float = 0.5
                  ) -> dict[Any, dict[str, Any]]:
    """Per category id of ``gt``: the devkit's matching of its detections, for resampling test images.

    Values: ``image_id`` [N] (of the score-ranked detections), ``tp`` / ``fp`` [N] (0/1 flags, see
    :func:`match_detections`) and ``positives`` (image id -> non-ignored GT boxes). The AP of any subset
    S of test images is ``ap_from_matches(tp[m], fp[m], sum of positives over S)`` with ``m`` the ranked
    detections on S: what :func:`voc_map` returns on ``gt`` restricted to S. Errors as :func:`voc_map`.
    """
    out = {}
    for cid, (gt_by_image, dets) in _by_class(gt, detections).items():
        order, tp, fp = match_detections(gt_by_image, dets, iou_threshold)
        out[cid] = {"image_id": np.array([dets[i]["image_id"] for i in order]), "tp": tp, "fp": fp,
                    "positives": {img: int((~ign).sum()) for img, (_, ign) in gt_by_image.items()}}
    return out


def voc_map(
    gt: Mapping[str, Any],
    detections: Sequence[Mapping[str, Any]],
    iou_threshold: float = 0.5,
    use_07_metric: bool = True,
) -> dict[str, Any]:
    """PASCAL VOC mean average precision.

    Args:
        gt: COCO-format ground truth dict (xywh pixel boxes). Annotations with
            ``difficult=1`` (or ``iscrowd=1``) are ignored: they do not count
            as positives and a detection matched to them is neither TP nor FP.
            Annotations on images absent from ``gt["images"]`` are dropped.
        detections: COCO result dicts ``{image_id, category_id, bbox, score}``.
            Detections of categories absent from ``gt["categories"]`` are
            ignored; an ``image_id`` absent from ``gt["images"]`` raises
            ``ValueError`` (as pycocotools does).
        iou_threshold: a detection matches a GT when IoU is strictly greater.
        use_07_metric: 11-point VOC2007 AP if True, else VOC2010+ area AP.

    Returns:
        ``{"map": float, "per_class": {category_id: ap}}``. Classes with no
        (non-ignored) ground-truth positives have undefined AP: they are left
        out of ``per_class`` and of the mean. If no class has positives,
        ``map`` is 0.0.
    """
    per_class: dict[Any, float] = {}
    for cid, (gt_by_image, dets) in _by_class(gt, detections).items():
        ap = _class_ap(gt_by_image, dets, iou_threshold, use_07_metric)
        if ap is not None:
            per_class[cid] = ap

    mean = float(np.mean(list(per_class.values()))) if per_class else 0.0
    return {"map": mean, "per_class": per_class}


def subset_map(matches: Mapping[Any, Mapping[str, Any]], image_ids, use_07_metric: bool = True) -> float:
    """mAP@``iou`` of :func:`class_matches`'s ``matches`` on the test images ``image_ids`` alone.

    Equals :func:`voc_map` on the ground truth and detections restricted to those images (classes
    without positives among them left out; 0.0 when none has any), without matching again: bootstrap
    and split-half estimates of the test set's sampling noise cost one matching per model.
    """
    chosen = set(image_ids)
    keys = np.array(sorted(chosen))
    aps = []
    for m in matches.values():
        npos = sum(n for img, n in m["positives"].items() if img in chosen)
        if npos == 0:
            continue
        on = np.isin(m["image_id"], keys)
        aps.append(ap_from_matches(m["tp"][on], m["fp"][on], npos, use_07_metric))
    return float(np.mean(aps)) if aps else 0.0
