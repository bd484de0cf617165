"""When to stop annotating: stabilizing predictions on a fixed unlabeled stop set, without test labels.

Bloodgood & Vijay-Shanker, "A Method for Stopping Active Learning Based on Stabilizing Predictions and the
Need for User-Adjustable Stopping", CoNLL 2009: keep a fixed set of unlabeled examples (the *stop set*),
measure after every cycle how much the new model's predictions on it agree with the previous model's, and
stop once the agreement has stayed high for a few cycles (their Kappa >= 0.99 averaged over 3 windows).

For detection the per-example label is a set of boxes, so the agreement of two cycles on an image is the
F1 of their detections matched one to one (same class, IoU >= ``iou_threshold``, score >= ``score_threshold``),
1 when both find nothing; the stop set's agreement is its mean over images. It reads predictions only: no
label of the stop set or of the test split is used. Whether the stop came at the right time is judged with
the test curve: :func:`flat_cycle` is the first cycle within ``tolerance`` of the run's best test mAP@0.5.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

import numpy as np


def stop_set_ids(pool_ids: Iterable[int], labeled_ids: Iterable[int], size: int, seed: int) -> list[int]:
    """``size`` pool images outside the initial labeled set, drawn uniformly (fixed by the seed), sorted.

    Fewer when the unlabeled pool is smaller. The draw uses its own generator stream (``[seed, 1]``) so it
    never shifts the initial split's or a strategy's random numbers.
    """
    labeled = set(labeled_ids)
    candidates = sorted(int(i) for i in pool_ids if i not in labeled)
    size = min(size, len(candidates))
    rng = np.random.default_rng([seed, 1])
    return sorted(int(i) for i in rng.choice(candidates, size=size, replace=False)) if size else []


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix of (N, 4) and (M, 4) xywh boxes."""
    ax2, ay2, bx2, by2 = a[:, 0] + a[:, 2], a[:, 1] + a[:, 3], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    iw = np.clip(np.minimum(ax2[:, None], bx2[None]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(ay2[:, None], by2[None]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = iw * ih
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _matches(a: np.ndarray, b: np.ndarray, iou_threshold: float) -> int:
    """One-to-one matches of two box sets: pairs taken greedily by decreasing IoU (ties in input order)."""
    if not len(a) or not len(b):
        return 0
    iou = _iou(a, b)
    order = np.argsort(-iou, axis=None, kind="stable")
    used_a, used_b, n = set(), set(), 0
    for flat in order:
        i, j = divmod(int(flat), iou.shape[1])
        if iou[i, j] < iou_threshold:
            break
        if i not in used_a and j not in used_b:
            used_a.add(i)
            used_b.add(j)
            n += 1
    return n


def _by_image_class(detections: Sequence[dict], score_threshold: float) -> dict:
    out: dict = defaultdict(lambda: defaultdict(list))
    for d in detections:
        if d["score"] >= score_threshold:
            out[int(d["image_id"])][int(d["category_id"])].append(d["bbox"])
    return out


def image_agreements(previous: Sequence[dict], current: Sequence[dict], image_ids: Sequence[int],
                     score_threshold: float = 0.5, iou_threshold: float = 0.5) -> np.ndarray:
    """Per image of ``image_ids``: F1 = 2·matches / (n_previous + n_current) of two cycles' detections.

    ``previous`` / ``current``: COCO result dicts (``image_id``, ``category_id``, ``bbox`` xywh pixels,
    ``score``). Detections below ``score_threshold`` are ignored; an image where both find nothing agrees
    fully (1.0). Returns an array of shape (len(image_ids),) with values in [0, 1].
    """
    a, b = _by_image_class(previous, score_threshold), _by_image_class(current, score_threshold)
    out = np.ones(len(image_ids))
    for k, image in enumerate(image_ids):
        pa, pb = a.get(int(image), {}), b.get(int(image), {})
        total = sum(map(len, pa.values())) + sum(map(len, pb.values()))
        if total == 0:
            continue
        matched = sum(_matches(np.asarray(pa.get(c, []), float).reshape(-1, 4),
                               np.asarray(pb.get(c, []), float).reshape(-1, 4), iou_threshold)
                      for c in set(pa) | set(pb))
        out[k] = 2.0 * matched / total
    return out


def agreement(previous: Sequence[dict], current: Sequence[dict], image_ids: Sequence[int],
              score_threshold: float = 0.5, iou_threshold: float = 0.5) -> float:
    """Mean of :func:`image_agreements` over the stop set (1.0 for an empty stop set)."""
    values = image_agreements(previous, current, image_ids, score_threshold, iou_threshold)
    return float(values.mean()) if len(values) else 1.0


def stop_cycle(agreements: Sequence[float], threshold: float, window: int) -> int | None:
    """The first cycle at which the stopping rule says stop, or None.

    ``agreements[c]`` compares cycle c's predictions with cycle c-1's (``agreements[0]`` is NaN: nothing
    before cycle 0). The rule says stop at the first cycle c whose last ``window`` agreements (cycles
    c-window+1 .. c, all >= 1) average at least ``threshold`` (Bloodgood & Vijay-Shanker: 3 windows, 0.99).
    """
    for c in range(window, len(agreements)):
        recent = np.asarray(agreements[c - window + 1:c + 1], dtype=float)
        if np.isfinite(recent).all() and recent.mean() >= threshold:
            return c
    return None


def flat_cycle(map50: Sequence[float], tolerance: float) -> int | None:
    """First cycle whose test mAP@0.5 is within ``tolerance`` (absolute) of the run's best: where the
    test curve flattens. None for an empty curve."""
    v = np.asarray(map50, dtype=float)
    if not len(v) or not np.isfinite(v).any():
        return None
    return int(np.flatnonzero(v >= np.nanmax(v) - tolerance)[0])


__all__ = ["agreement", "flat_cycle", "image_agreements", "stop_cycle", "stop_set_ids"]
