"""Inference over a dataset: detections in original image coordinates, and per-batch raw outputs."""
from __future__ import annotations

from typing import Callable, Iterator

import torch

from ..data.dataset import DetectionDataset, collate


def iterate_batches(dataset: DetectionDataset, batch_size: int) -> Iterator[tuple[torch.Tensor, list[dict]]]:
    for start in range(0, len(dataset), batch_size):
        yield collate([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])


@torch.no_grad()
def run_model(model, dataset: DetectionDataset, device: torch.device, batch_size: int,
              on_batch: Callable[[torch.Tensor, list[dict], dict, list[dict]], None],
              branches: tuple[str, ...] | None = None, return_features: bool = False,
              detect: bool = True) -> None:
    """Forward every image once (eval mode); call ``on_batch(images, targets, outputs, detections)``."""
    model.eval()
    for images, targets in iterate_batches(dataset, batch_size):
        images = images.to(device)
        out = model(images, branches=branches, return_features=return_features)
        dets = []
        if detect:
            dets = model.postprocess(out["cls"], out["reg"], model.anchors(images), tuple(images.shape[-2:]))
        on_batch(images, targets, out, dets)


def to_coco_results(detections: list[dict], targets: list[dict], categories: list[dict]) -> list[dict]:
    """Map detections back to original image pixels as COCO result dicts."""
    results = []
    for d, t in zip(detections, targets):
        sx, sy = t["scale"]
        boxes = (d["boxes"].cpu() / torch.tensor([sx, sy, sx, sy])).tolist()
        for (x1, y1, x2, y2), s, lab in zip(boxes, d["scores"].tolist(), d["labels"].tolist()):
            results.append({"image_id": t["image_id"], "category_id": categories[lab]["id"],
                            "bbox": [round(x1, 3), round(y1, 3), round(x2 - x1, 3), round(y2 - y1, 3)],
                            "score": round(s, 5)})
    return results


def predict(model, dataset: DetectionDataset, device: torch.device, batch_size: int = 64) -> list[dict]:
    results: list[dict] = []

    def collect(images, targets, out, dets):
        results.extend(to_coco_results(dets, targets, dataset.categories))

    run_model(model, dataset, device, batch_size, collect, branches=("cls", "reg"))
    return results
