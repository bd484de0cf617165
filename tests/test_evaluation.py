"""Tests for activedet.evaluation (VOC AP/mAP and COCO wrapper)."""

from __future__ import annotations

import contextlib
import copy
import io

import numpy as np
import pytest

from activedet.evaluation import coco_evaluate, evaluate_detections, voc_ap, voc_map

STAT_NAMES = ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"]


# ----------------------------------------------------------------- helpers
def make_gt(anns, n_images=2, cat_ids=(1,)):
    """GT dict from tuples (image_id, category_id, bbox[, difficult])."""
    annotations = []
    for i, a in enumerate(anns):
        img, cat, box = a[0], a[1], list(a[2])
        ann = {"id": i + 1, "image_id": img, "category_id": cat, "bbox": box,
               "area": box[2] * box[3], "iscrowd": 0}
        if len(a) > 3:
            ann["difficult"] = a[3]
        annotations.append(ann)
    return {
        "images": [{"id": i, "file_name": f"{i}.jpg", "width": 100, "height": 100}
                   for i in range(1, n_images + 1)],
        "annotations": annotations,
        "categories": [{"id": c, "name": f"c{c}"} for c in cat_ids],
    }


def det(img, cat, box, score):
    return {"image_id": img, "category_id": cat, "bbox": list(box), "score": score}


A = [10, 10, 20, 20]
B = [50, 50, 20, 20]


def reference_voc_ap(rec, prec, use_07_metric=False):
    """Verbatim transcription of py-faster-rcnn lib/datasets/voc_eval.py::voc_ap."""
    if use_07_metric:
        ap = 0.0
        for t in np.arange(0.0, 1.1, 0.1):
            if np.sum(rec >= t) == 0:
                p = 0
            else:
                p = np.max(prec[rec >= t])
            ap = ap + p / 11.0
    else:
        mrec = np.concatenate(([0.0], rec, [1.0]))
        mpre = np.concatenate(([0.0], prec, [0.0]))
        for i in range(mpre.size - 1, 0, -1):
            mpre[i - 1] = np.maximum(mpre[i - 1], mpre[i])
        i = np.where(mrec[1:] != mrec[:-1])[0]
        ap = np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1])
    return ap


# ----------------------------------------------------------------- voc_ap
def test_voc_ap_simple_hand_computed():
    rec = np.array([0.5, 1.0])
    prec = np.array([1.0, 0.5])
    # area: envelope is 1.0 on (0, 0.5] and 0.5 on (0.5, 1] -> 0.5*1 + 0.5*0.5 = 0.75
    assert voc_ap(rec, prec, use_07_metric=False) == pytest.approx(0.75, abs=1e-12)
    # 11-pt: t = 0..0.5 (6 points) -> 1.0; t = 0.6..1.0 (5 points) -> 0.5
    assert voc_ap(rec, prec, use_07_metric=True) == pytest.approx((6 * 1.0 + 5 * 0.5) / 11, abs=1e-12)


def test_voc_ap_non_monotone_precision():
    rec = np.array([0.25, 0.25, 0.5, 0.75])
    prec = np.array([1.0, 0.5, 2 / 3, 0.75])
    # Envelope (running max from the right): 1, 0.75, 0.75, 0.75.
    # area: 0.25*1 + 0.25*0.75 + 0.25*0.75 + 0.25*0 (recall never reaches 1) = 0.625
    assert voc_ap(rec, prec, use_07_metric=False) == pytest.approx(0.625, abs=1e-12)
    # 11-pt: t=0,.1,.2 -> 1.0 (3 pts); t=.3..0.7 -> 0.75 (5 pts); t=.8,.9,1 -> 0 (3 pts)
    assert voc_ap(rec, prec, use_07_metric=True) == pytest.approx((3 * 1.0 + 5 * 0.75) / 11, abs=1e-12)


def test_voc_ap_matches_reference_on_random_curves():
    rng = np.random.default_rng(0)
    for _ in range(50):
        n = int(rng.integers(1, 30))
        tp = rng.random(n) < 0.6
        npos = max(int(tp.sum()) + int(rng.integers(0, 4)), 1)
        tpc, fpc = np.cumsum(tp), np.cumsum(~tp)
        rec = tpc / npos
        prec = tpc / np.maximum(tpc + fpc, np.finfo(np.float64).eps)
        for use07 in (True, False):
            assert voc_ap(rec, prec, use07) == pytest.approx(float(reference_voc_ap(rec, prec, use07)), abs=1e-12)


def test_voc_ap_11pt_thresholds_are_reference_arange():
    # The reference uses np.arange(0, 1.1, 0.1), whose 4th threshold is
    # 0.30000000000000004 > 3/10, so recall exactly 0.3 only reaches t = 0, .1, .2.
    rec = np.array([3 / 10])
    prec = np.array([1.0])
    assert voc_ap(rec, prec, use_07_metric=True) == pytest.approx(3 / 11, abs=1e-12)
    assert voc_ap(rec, prec, use_07_metric=True) == pytest.approx(float(reference_voc_ap(rec, prec, True)), abs=1e-12)


def test_voc_ap_returns_python_float():
    assert type(voc_ap(np.array([1.0]), np.array([1.0]), True)) is float
    assert type(voc_ap(np.array([1.0]), np.array([1.0]), False)) is float


# ----------------------------------------------------------------- voc_map
@pytest.mark.parametrize("use07", [True, False])
def test_voc_map_perfect(use07):
    gt = make_gt([(1, 1, A), (1, 2, B), (2, 1, B)], cat_ids=(1, 2))
    dets = [det(a["image_id"], a["category_id"], a["bbox"], 0.9) for a in gt["annotations"]]
    out = voc_map(gt, dets, use_07_metric=use07)
    assert out["map"] == pytest.approx(1.0)
    assert out["per_class"] == {1: pytest.approx(1.0), 2: pytest.approx(1.0)}


def test_voc_map_fp_ranked_above_tp():
    gt = make_gt([(1, 1, A)])
    dets = [det(1, 1, B, 0.9), det(1, 1, A, 0.8)]  # FP then TP
    # rec [0, 1], prec [0, 0.5] -> envelope 0.5 everywhere -> AP 0.5 for both variants
    assert voc_map(gt, dets, use_07_metric=False)["map"] == pytest.approx(0.5, abs=1e-12)
    assert voc_map(gt, dets, use_07_metric=True)["map"] == pytest.approx(0.5, abs=1e-12)


def test_voc_map_tp_fp_tp():
    gt = make_gt([(1, 1, A), (2, 1, A)])
    dets = [det(1, 1, A, 0.9), det(1, 1, B, 0.8), det(2, 1, A, 0.7)]
    # rec [.5, .5, 1], prec [1, .5, 2/3]: area = .5*1 + .5*2/3 = 5/6
    assert voc_map(gt, dets, use_07_metric=False)["map"] == pytest.approx(5 / 6, abs=1e-12)
    # 11-pt: 6 points at 1.0, 5 points at 2/3
    assert voc_map(gt, dets, use_07_metric=True)["map"] == pytest.approx((6 + 5 * 2 / 3) / 11, abs=1e-12)


def test_voc_map_duplicate_is_fp():
    gt = make_gt([(1, 1, A), (2, 1, A)])
    # second detection of image-1 box is a duplicate -> TP, FP, TP (same curve as above);
    # if duplicates were ignored or counted as TP the AP would be 1.0
    dets = [det(1, 1, A, 0.9), det(1, 1, [10.5, 10, 20, 20], 0.8), det(2, 1, A, 0.7)]
    assert voc_map(gt, dets, use_07_metric=False)["map"] == pytest.approx(5 / 6, abs=1e-12)


def test_voc_map_wrong_class_is_fp():
    gt = make_gt([(1, 1, A), (2, 2, B)], cat_ids=(1, 2))
    dets = [det(1, 2, A, 0.9),  # class 2 on a class-1 object: FP for class 2
            det(2, 2, B, 0.8),  # TP class 2
            det(1, 1, A, 0.7)]  # TP class 1
    out = voc_map(gt, dets, use_07_metric=False)
    assert out["per_class"][1] == pytest.approx(1.0)
    assert out["per_class"][2] == pytest.approx(0.5)  # FP then TP
    assert out["map"] == pytest.approx(0.75)


@pytest.mark.parametrize("use07", [True, False])
def test_voc_map_difficult_ignored(use07):
    gt = make_gt([(1, 1, A), (1, 1, B, 1)])  # B is difficult
    # A detection on the difficult box, ranked first, is neither TP nor FP (else AP 0.5).
    dets = [det(1, 1, B, 0.95), det(1, 1, A, 0.9)]
    assert voc_map(gt, dets, use_07_metric=use07)["map"] == pytest.approx(1.0)
    # Missing the difficult box does not cost recall (else AP 0.5).
    assert voc_map(gt, [det(1, 1, A, 0.9)], use_07_metric=use07)["map"] == pytest.approx(1.0)
    # Two detections on the difficult box: still ignored, not duplicates.
    dets = [det(1, 1, B, 0.95), det(1, 1, B, 0.94), det(1, 1, A, 0.9)]
    assert voc_map(gt, dets, use_07_metric=use07)["map"] == pytest.approx(1.0)


def test_voc_map_difficult_only_class_excluded():
    gt = make_gt([(1, 1, A), (1, 2, B, 1)], cat_ids=(1, 2))
    out = voc_map(gt, [det(1, 1, A, 0.9), det(1, 2, B, 0.9)])
    assert out["per_class"] == {1: pytest.approx(1.0)}


def test_voc_map_class_without_gt_excluded():
    gt = make_gt([(1, 1, A)], cat_ids=(1, 2))
    dets = [det(1, 1, A, 0.9), det(2, 2, B, 0.99)]  # class 2 has no GT at all
    out = voc_map(gt, dets)
    assert 2 not in out["per_class"]
    assert out["map"] == pytest.approx(1.0)  # not (1.0 + 0.0) / 2


def test_voc_map_no_positives_at_all():
    gt = make_gt([], cat_ids=(1, 2))
    out = voc_map(gt, [det(1, 1, A, 0.5)])
    assert out == {"map": 0.0, "per_class": {}}


def test_voc_map_no_detections():
    gt = make_gt([(1, 1, A)])
    assert voc_map(gt, [])["map"] == 0.0


@pytest.mark.parametrize("height, expected", [(4.99, 0.0), (5.0, 0.0), (5.01, 1.0)])
def test_voc_map_iou_threshold_boundary(height, expected):
    gt = make_gt([(1, 1, [0, 0, 10, 10])])
    # IoU = height / 10 in continuous coordinates; match needs IoU > 0.5 (strict).
    # With the devkit's +1 pixel convention 4.99 would give IoU 0.545 and match.
    out = voc_map(gt, [det(1, 1, [0, 0, 10, height], 0.9)], use_07_metric=False)
    assert out["map"] == pytest.approx(expected)


def test_voc_map_custom_iou_threshold():
    gt = make_gt([(1, 1, [0, 0, 10, 10])])
    dets = [det(1, 1, [0, 0, 10, 7], 0.9)]  # IoU 0.7
    assert voc_map(gt, dets, iou_threshold=0.5)["map"] == pytest.approx(1.0)
    assert voc_map(gt, dets, iou_threshold=0.75)["map"] == pytest.approx(0.0)


def test_voc_map_best_iou_gt_already_matched_gives_fp():
    # Devkit semantics: the detection is compared with its best-IoU GT only; if
    # that one is already taken it is an FP even if another GT overlaps > 0.5.
    g1, g2 = [0, 0, 10, 10], [2, 0, 10, 10]  # IoU(g1, g2) = 8/12
    gt = make_gt([(1, 1, g1), (1, 1, g2)])
    dets = [det(1, 1, g1, 0.9), det(1, 1, [0.5, 0, 10, 10], 0.8)]  # 2nd: best GT is g1
    out = voc_map(gt, dets, use_07_metric=False)
    # TP, FP: rec [.5, .5], prec [1, .5] -> area 0.5
    assert out["map"] == pytest.approx(0.5)


def test_voc_map_unknown_image_raises():
    gt = make_gt([(1, 1, A)])
    with pytest.raises(ValueError):
        voc_map(gt, [det(99, 1, A, 0.9)])


def test_voc_map_stable_tie_order():
    gt = make_gt([(1, 1, A)])
    # Equal scores: input order decides the ranking (FP first -> AP 0.5; TP first -> 1.0).
    assert voc_map(gt, [det(1, 1, B, 0.5), det(1, 1, A, 0.5)], use_07_metric=False)["map"] == pytest.approx(0.5)
    assert voc_map(gt, [det(1, 1, A, 0.5), det(1, 1, B, 0.5)], use_07_metric=False)["map"] == pytest.approx(1.0)


# ----------------------------------------------------------------- coco
def random_case(seed=0, n_images=10, n_cats=3):
    rng = np.random.default_rng(seed)
    images = [{"id": i, "file_name": f"{i}.jpg", "width": 200, "height": 200} for i in range(1, n_images + 1)]
    cats = [{"id": c, "name": f"c{c}"} for c in range(1, n_cats + 1)]
    anns, dets = [], []
    for img in images:
        for _ in range(int(rng.integers(1, 5))):
            # sizes span small (<32^2), medium and large COCO ranges
            w, h = rng.uniform(8, 120, size=2)
            x, y = rng.uniform(0, 200 - w), rng.uniform(0, 200 - h)
            cat = int(rng.integers(1, n_cats + 1))
            anns.append({"id": len(anns) + 1, "image_id": img["id"], "category_id": cat,
                         "bbox": [float(x), float(y), float(w), float(h)],
                         "area": float(w * h), "iscrowd": 0})
            for _ in range(int(rng.integers(0, 3))):  # noisy hits, some duplicates
                noise = rng.normal(0, 0.15, size=4) * np.array([w, h, w, h])
                dcat = cat if rng.random() < 0.85 else int(rng.integers(1, n_cats + 1))
                dets.append({"image_id": img["id"], "category_id": dcat,
                             "bbox": [float(x + noise[0]), float(y + noise[1]),
                                      float(max(w + noise[2], 1.0)), float(max(h + noise[3], 1.0))],
                             "score": float(rng.random())})
        for _ in range(int(rng.integers(0, 3))):  # background false positives
            w, h = rng.uniform(8, 80, size=2)
            dets.append({"image_id": img["id"], "category_id": int(rng.integers(1, n_cats + 1)),
                         "bbox": [float(rng.uniform(0, 120)), float(rng.uniform(0, 120)), float(w), float(h)],
                         "score": float(rng.random())})
    return {"images": images, "annotations": anns, "categories": cats}, dets


def pycocotools_stats(gt, dets):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt, dets = copy.deepcopy(gt), copy.deepcopy(dets)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(dets)
        ev = COCOeval(coco_gt, coco_dt, iouType="bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return np.asarray(ev.stats, dtype=np.float64)


def test_coco_evaluate_matches_pycocotools():
    pytest.importorskip("pycocotools")
    gt, dets = random_case(seed=0)
    gt_before, dets_before = copy.deepcopy(gt), copy.deepcopy(dets)
    out = coco_evaluate(gt, dets)
    expected = pycocotools_stats(gt, dets)
    assert list(out) == STAT_NAMES
    assert all(type(v) is float for v in out.values())
    np.testing.assert_allclose([out[k] for k in STAT_NAMES], expected, rtol=0, atol=1e-12)
    # sanity: a non-trivial case, not all zeros / ones
    assert 0.05 < out["AP50"] < 0.999
    # caller's inputs untouched (pycocotools writes into annotation / result dicts)
    assert gt == gt_before and dets == dets_before


def test_coco_evaluate_fills_area_and_iscrowd():
    pytest.importorskip("pycocotools")
    gt, dets = random_case(seed=1)
    bare = copy.deepcopy(gt)
    for a in bare["annotations"]:
        del a["area"], a["iscrowd"]
    bare_before = copy.deepcopy(bare)
    out = coco_evaluate(bare, dets)
    np.testing.assert_allclose([out[k] for k in STAT_NAMES], pycocotools_stats(gt, dets), rtol=0, atol=1e-12)
    assert bare == bare_before


def test_coco_evaluate_zero_detections():
    pytest.importorskip("pycocotools")
    gt, _ = random_case(seed=2)
    out = coco_evaluate(gt, [])
    assert list(out) == STAT_NAMES
    assert all(v == 0.0 for v in out.values())


def test_coco_evaluate_unknown_image_raises():
    pytest.importorskip("pycocotools")
    gt, _ = random_case(seed=3)
    with pytest.raises(ValueError):
        coco_evaluate(gt, [det(10_000, 1, A, 0.9)])


def test_coco_perfect_detections():
    pytest.importorskip("pycocotools")
    gt, _ = random_case(seed=4)
    dets = [det(a["image_id"], a["category_id"], a["bbox"], 1.0) for a in gt["annotations"]]
    out = coco_evaluate(gt, dets)
    assert out["AP"] == pytest.approx(1.0) and out["AP50"] == pytest.approx(1.0)


# ----------------------------------------------------------------- combined
def test_evaluate_detections_keys_and_values():
    pytest.importorskip("pycocotools")
    gt, dets = random_case(seed=5)
    out = evaluate_detections(gt, dets)
    voc07 = voc_map(gt, dets, use_07_metric=True)
    assert out["map50"] == out["map50_voc07"] == voc07["map"]
    assert out["per_class_ap50"] == voc07["per_class"]
    assert out["map50_area"] == voc_map(gt, dets, use_07_metric=False)["map"]
    assert out["coco"] == coco_evaluate(gt, dets)
    assert out["coco_ap"] == out["coco"]["AP"] and out["coco_ap50"] == out["coco"]["AP50"]
    assert out["n_images"] == 10 and out["n_detections"] == len(dets)
    # VOC area AP@0.5 and COCO AP50 (101-point) agree closely on the same matches
    assert out["map50_area"] == pytest.approx(out["coco_ap50"], abs=0.05)


def test_evaluate_detections_zero_detections():
    pytest.importorskip("pycocotools")
    gt, _ = random_case(seed=6)
    out = evaluate_detections(gt, [])
    assert out["map50"] == 0.0 and out["map50_area"] == 0.0 and out["coco_ap"] == 0.0
    assert out["n_detections"] == 0


# ----------------------------------------------------------------- test-image subsets
@pytest.mark.parametrize("use07", [True, False])
def test_subset_map_equals_voc_map_on_the_restricted_ground_truth(use07):
    from activedet.evaluation.voc import class_matches, subset_map

    gt, dets = random_case(seed=4, n_images=30, n_cats=4)
    matches = class_matches(gt, dets)
    assert subset_map(matches, [im["id"] for im in gt["images"]], use07) == voc_map(gt, dets, use_07_metric=use07)["map"]
    rng = np.random.default_rng(0)
    for _ in range(5):
        keep = set(rng.choice([im["id"] for im in gt["images"]], 11, replace=False).tolist())
        sub = {"images": [im for im in gt["images"] if im["id"] in keep],
               "annotations": [a for a in gt["annotations"] if a["image_id"] in keep], "categories": gt["categories"]}
        expected = voc_map(sub, [d for d in dets if d["image_id"] in keep], use_07_metric=use07)["map"]
        assert subset_map(matches, keep, use07) == pytest.approx(expected, abs=1e-12)


def test_subset_map_by_hand():
    from activedet.evaluation.voc import class_matches, subset_map

    # image 1: TP at 0.9; image 2: FP at 0.8 and its GT missed. All: AP area 0.5; image 1 alone: 1.0; image 2: 0.0
    gt = make_gt([(1, 1, A), (2, 1, A)])
    dets = [det(1, 1, A, 0.9), det(2, 1, B, 0.8)]
    m = class_matches(gt, dets)
    assert subset_map(m, [1, 2], False) == pytest.approx(0.5)
    assert subset_map(m, [1], False) == pytest.approx(1.0) and subset_map(m, [2], False) == 0.0
    assert subset_map(m, [], False) == 0.0  # no positives among no images
