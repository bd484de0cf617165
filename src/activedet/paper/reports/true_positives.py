"""MI-AOD Fig. 7: true positives among the images each strategy selects, per cycle.

For a cycle's ``selected.json`` the cycle's own model detects on the selected images; a
detection with score >= ``score_threshold`` is a true positive when the ground-truth box of its
class it overlaps most has IoU > ``iou_threshold`` and no higher-scored detection took that box
(the VOC devkit's rule, as in our mAP). Difficult boxes are neither hits nor misses. A strategy
that picks images whose objects the current model already finds selects many true positives.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torchvision.ops import box_iou

from ...io import InputError, read_json, write_json
from .common import (
    colour,
    label,
    markdown_table,
    mean_std,
    mean_std_cell,
    pyplot,
    save_figure,
    seeds_label,
    write_csv,
    write_markdown,
)


def xywh_to_xyxy(boxes) -> torch.Tensor:
    b = torch.as_tensor(boxes, dtype=torch.float64).reshape(-1, 4)
    return torch.cat([b[:, :2], b[:, :2] + b[:, 2:]], dim=1)


def count_image(det_boxes, det_scores, det_labels, gt_boxes, gt_labels, gt_difficult=None,
                score_threshold: float = 0.5, iou_threshold: float = 0.5) -> dict:
    """True positives of one image's detections (boxes xyxy). Returns n_tp, n_detections, n_gt."""
    det_boxes = torch.as_tensor(det_boxes, dtype=torch.float64).reshape(-1, 4)
    det_scores = torch.as_tensor(det_scores, dtype=torch.float64).reshape(-1)
    det_labels = torch.as_tensor(det_labels, dtype=torch.int64).reshape(-1)
    gt_boxes = torch.as_tensor(gt_boxes, dtype=torch.float64).reshape(-1, 4)
    gt_labels = torch.as_tensor(gt_labels, dtype=torch.int64).reshape(-1)
    difficult = (torch.zeros(len(gt_labels), dtype=torch.bool) if gt_difficult is None
                 else torch.as_tensor(gt_difficult, dtype=torch.bool).reshape(-1))
    keep = det_scores >= score_threshold
    det_boxes, det_scores, det_labels = det_boxes[keep], det_scores[keep], det_labels[keep]
    order = torch.argsort(-det_scores, stable=True)
    iou = box_iou(det_boxes, gt_boxes) if len(gt_boxes) else torch.zeros(len(det_boxes), 0, dtype=torch.float64)
    iou = iou.masked_fill(det_labels[:, None] != gt_labels[None, :], -1.0)  # only boxes of the same class
    taken = torch.zeros(len(gt_boxes), dtype=torch.bool)
    n_tp, n_ignored = 0, 0
    # Greedy in score order: each detection's outcome depends on what the higher-scored ones took.
    for i in order.tolist():
        if iou.shape[1] == 0:
            break
        j = int(iou[i].argmax())
        if iou[i, j] > iou_threshold:
            if difficult[j]:
                n_ignored += 1
            elif not taken[j]:
                taken[j] = True
                n_tp += 1
    return {"n_tp": n_tp, "n_detections": int(keep.sum()) - n_ignored, "n_gt": int((~difficult).sum())}


def count_selection(detections: list[dict], ground_truth: dict, selected_ids: list[int],
                    score_threshold: float, iou_threshold: float) -> dict:
    """Counts over the selected images; ``detections`` and ``ground_truth`` in COCO form (xywh, category ids)."""
    by_image_det: dict[int, list[dict]] = {i: [] for i in selected_ids}
    for d in detections:
        if d["image_id"] in by_image_det:
            by_image_det[d["image_id"]].append(d)
    by_image_gt: dict[int, list[dict]] = {i: [] for i in selected_ids}
    for a in ground_truth["annotations"]:
        if a["image_id"] in by_image_gt:
            by_image_gt[a["image_id"]].append(a)
    per_image = []
    for i in selected_ids:
        dets, gts = by_image_det[i], by_image_gt[i]
        c = count_image(xywh_to_xyxy([d["bbox"] for d in dets]), [d["score"] for d in dets],
                        [d["category_id"] for d in dets], xywh_to_xyxy([a["bbox"] for a in gts]),
                        [a["category_id"] for a in gts], [bool(a.get("difficult", 0)) for a in gts],
                        score_threshold, iou_threshold)
        per_image.append({"image_id": i, **c})
    total = {k: sum(p[k] for p in per_image) for k in ("n_tp", "n_detections", "n_gt")}
    return {**total, "n_selected": len(selected_ids), "score_threshold": score_threshold,
            "iou_threshold": iou_threshold, "per_image": per_image}


def count_run(model_path, pool_path, images_dir, selected_path, out_path, score_threshold: float,
              iou_threshold: float, device: str = "auto", batch_size: int = 64) -> dict:
    """Detect with a cycle's model on its selected images and count the true positives (one JSON)."""
    from ...checkpoint import load_model
    from ...cycle import Selection
    from ...data.coco import load_coco
    from ...data.dataset import DetectionDataset
    from ...device import resolve_device
    from ...engine.predict import predict

    sel = Selection.read(selected_path)
    ids, meta = sel.image_ids, {"strategy": sel.strategy, "seed": sel.seed, "cycle": sel.cycle}
    dev = resolve_device(device)
    model, ckpt = load_model(model_path, dev)
    ds = ckpt["params"]["dataset"]
    pool = load_coco(pool_path, ds["on_box_outside"]).subset(ids)
    data = DetectionDataset(pool, images_dir, ds["input_size"], ds["keep_ratio"], False, ckpt["categories"])
    with torch.no_grad():
        dets = predict(model, data, dev, batch_size)
    counts = {**meta, "n_labeled": ckpt.get("n_images"),
              **count_selection(dets, pool.to_dict(), ids, score_threshold, iou_threshold)}
    write_json(out_path, counts)
    return counts


def collect(count_files: list[str | Path]) -> pd.DataFrame:
    rows = []
    for f in count_files:
        c = read_json(f)
        try:
            rows.append({k: c[k] for k in ("strategy", "seed", "cycle", "n_labeled", "n_selected", "n_gt",
                                           "n_detections", "n_tp")})
        except KeyError as e:
            raise InputError(f"{f}: not a true-positive count (missing {e}); write it with paper-count-tp") from None
    if not rows:
        raise InputError("paper-fig7: no count files given")
    return pd.DataFrame(rows)


def build_table(counts: pd.DataFrame) -> pd.DataFrame:
    """Per strategy and cycle: true positives, ground-truth objects and precision, mean ± std over seeds."""
    rows = []
    for (strategy, cycle), g in counts.groupby(["strategy", "cycle"], sort=False):
        tp, tp_s, n = mean_std(g["n_tp"])
        gt, gt_s, _ = mean_std(g["n_gt"])
        prec, prec_s, _ = mean_std(g["n_tp"] / g["n_detections"].where(g["n_detections"] > 0))
        rows.append({"strategy": strategy, "cycle": int(cycle), "labeled before": int(g["n_labeled"].iloc[0]),
                     "selected images": int(g["n_selected"].iloc[0]), "n_seeds": n,
                     "true positives": mean_std_cell(tp, tp_s), "objects in the selection": mean_std_cell(gt, gt_s),
                     "TP / objects (%)": mean_std_cell(100 * tp / gt if gt else float("nan"), float("nan")),
                     "TP / detections (%)": mean_std_cell(100 * prec, 100 * prec_s),
                     "tp_mean": tp, "tp_std": tp_s})
    return pd.DataFrame(rows)


def plot(table: pd.DataFrame, path, title: str) -> None:
    plt = pyplot()
    strategies = list(dict.fromkeys(table["strategy"]))
    cycles = sorted(table["cycle"].unique())
    fig, ax = plt.subplots(figsize=(max(6.4, 1.4 + 1.1 * len(cycles) * max(1, len(strategies)) / 3), 4.0), dpi=110)
    width = 0.8 / max(1, len(strategies))
    for k, s in enumerate(strategies):
        g = table[table["strategy"] == s].set_index("cycle").reindex(cycles)
        x = np.arange(len(cycles)) + (k - (len(strategies) - 1) / 2) * width
        std = g["tp_std"].fillna(0).to_numpy()
        # a count is never negative: the lower error bar stops at zero
        ax.bar(x, g["tp_mean"], width, yerr=[np.minimum(std, g["tp_mean"].to_numpy()), std], capsize=2,
               color=colour(s), label=label(s))
    ax.set_xticks(np.arange(len(cycles)), [f"cycle {c}" for c in cycles])
    ax.set_ylabel("true positives among the selected images")
    ax.set_ylim(bottom=0)
    n_seeds = int(table["n_seeds"].max())
    ax.set_title(f"{title}\n(mean ± std over {seeds_label(n_seeds)})", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def write(count_files, out_dir) -> list[Path]:
    counts = collect(count_files)
    table = build_table(counts)
    out_dir = Path(out_dir)
    first = read_json(count_files[0])
    title = "MI-AOD Fig. 7: true positives among the selected images per cycle"
    plot(table, out_dir / "miaod_fig7.png", title)
    caption = (f"The cycle's model detects on the images its strategy selected; a detection with score >= "
               f"{first['score_threshold']:g} is a true positive when it matches a ground-truth box of its class "
               f"(IoU > {first['iou_threshold']:g}, each box once; the VOC rule). The paper shows this as bars for "
               f"VOC RetinaNet (MI-AOD hits the most in every cycle) without publishing the values, so there are no "
               f"paper numbers to print beside ours. Per seed: miaod_fig7_counts.csv.")
    md = markdown_table(table.drop(columns=["tp_mean", "tp_std"]), title, caption)
    return [write_csv(table, out_dir / "miaod_fig7.csv"), write_csv(counts, out_dir / "miaod_fig7_counts.csv"),
            write_markdown(md, out_dir / "miaod_fig7.md"), out_dir / "miaod_fig7.png"]
