"""Item 4: our evaluator vs raw pycocotools on the same detections: equal values, time ratio.

The detections are made from the test split's ground truth, the way a trained detector's look: each
object found once or twice with jittered boxes and high scores, some missed, and low-scoring false
positives up to 100 per image (the detector's ``detections_per_image``), so every part of the
matching and the precision/recall accumulation is exercised. Fixed seed: the same detections every run.
"""
from __future__ import annotations

import contextlib
import copy
import io

import numpy as np

from .common import Context
from .data import scenes

SECTION = "4 evaluation"


def synthetic_detections(gt: dict, seed: int = 0, per_image: int = 100) -> list[dict]:
    rng = np.random.default_rng(seed)
    cats = [c["id"] for c in gt["categories"]]
    by_image: dict[int, list[dict]] = {im["id"]: [] for im in gt["images"]}
    for a in gt["annotations"]:
        by_image[a["image_id"]].append(a)
    dets = []
    for im in gt["images"]:
        W, H = im["width"], im["height"]
        own = []
        for a in by_image[im["id"]]:
            if rng.random() < 0.1:  # missed
                continue
            x, y, w, h = a["bbox"]
            for _ in range(1 + (rng.random() < 0.3)):  # sometimes a duplicate
                j = rng.normal(0, 0.08, 4) * [w, h, w, h]
                cat = a["category_id"] if rng.random() < 0.85 else int(rng.choice(cats))
                own.append((x + j[0], y + j[1], max(1.0, w + j[2]), max(1.0, h + j[3]), cat, rng.uniform(0.3, 1.0)))
        while len(own) < per_image:
            w, h = rng.uniform(4, W / 2), rng.uniform(4, H / 2)
            own.append((rng.uniform(0, W - w), rng.uniform(0, H - h), w, h, int(rng.choice(cats)),
                        rng.uniform(0.05, 0.5)))
        for x, y, w, h, cat, s in own[:per_image]:
            dets.append({"image_id": im["id"], "category_id": cat, "score": round(float(s), 5),
                         "bbox": [round(float(x), 3), round(float(y), 3), round(float(w), 3), round(float(h), 3)]})
    return dets


def pycocotools_stats(gt: dict, dets: list[dict]) -> np.ndarray:
    """The 12 COCOeval stats, called the way pycocotools' own example does (copies: loadRes edits them)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(gt)
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(copy.deepcopy(dets))
        e = COCOeval(coco_gt, coco_dt, iouType="bbox")
        e.evaluate()
        e.accumulate()
        e.summarize()
    return np.asarray(e.stats, dtype=float)


def run(ctx: Context) -> None:
    from activedet.evaluation import evaluate_detections
    from activedet.evaluation.coco import COCO_STAT_NAMES, coco_evaluate

    n = 24 if ctx.quick else 500
    test = scenes(ctx, 1, n)["test"]
    gt = {"info": {}, "licenses": [], **{k: v for k, v in test.to_dict().items() if k != "info"}}
    dets = synthetic_detections(gt)
    ours = coco_evaluate(gt, dets)
    ref = pycocotools_stats(gt, dets)
    diff = float(np.max(np.abs(np.array([ours[k] for k in COCO_STAT_NAMES]) - ref)))
    what = f"{n} images, {len(gt['annotations'])} objects, {len(dets)} detections"
    ctx.add(SECTION, "COCO stats: max |ours - pycocotools| over the 12 stats", diff, "", goal="<= 1e-6",
            note=f"{what}; AP {ours['AP']:.4f}, AP50 {ours['AP50']:.4f}")
    t = ctx.paired({"ours": lambda: coco_evaluate(gt, dets), "all": lambda: evaluate_detections(gt, dets),
                    "pycocotools": lambda: pycocotools_stats(gt, dets)})
    ctx.add(SECTION, "COCO evaluation time (activedet.evaluation.coco_evaluate)", t["ours"], "s",
            reference="pycocotools COCOeval", reference_values=t["pycocotools"],
            ratio_values=[a / b for a, b in zip(t["ours"], t["pycocotools"])], note=f"{what}; ratio = time ratio")
    ctx.add(SECTION, "full evaluation time (VOC07 + VOC area mAP@0.5 + COCO)", t["all"], "s",
            reference="pycocotools COCOeval", reference_values=t["pycocotools"],
            ratio_values=[a / b for a, b in zip(t["all"], t["pycocotools"])],
            note="evaluate_detections, what every evaluate job runs; ratio = time ratio")
