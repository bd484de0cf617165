"""Images of a COCO dataset as fixed-size tensors with their boxes, batched for the detector."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from ..io import InputError
from .images import read_image as read_displayed, stored_size
from .coco import CocoData, check_file_name


def read_image(path: Path, where: str) -> Image.Image:
    """The image as displayed, 8-bit RGB (:func:`activedet.data.images.read_image`); errors name ``where``."""
    return read_displayed(path, where)


class DetectionDataset(torch.utils.data.Dataset):
    """Images of a COCO dataset resized to a fixed input size, with their boxes.

    Every image becomes an (H, W) float tensor in [0, 1] so a batch is one
    stacked tensor and the anchors are the same for every image: this is what
    lets the loss run batched over images. Boxes are xyxy in input pixels and
    labels are contiguous class indices 0..C-1 in category-id order.
    """

    def __init__(self, coco: CocoData, images_dir: str | Path, input_size: Sequence[int] = (64, 64),
                 keep_ratio: bool = False, cache: bool = True, categories: list[dict] | None = None):
        self.coco = coco
        self.images_dir = Path(images_dir)
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.keep_ratio = keep_ratio
        self.categories = categories if categories is not None else sorted(coco.categories, key=lambda c: c["id"])
        self.cat_to_label = {c["id"]: i for i, c in enumerate(self.categories)}
        unknown = {a["category_id"] for a in coco.annotations} - set(self.cat_to_label)
        if unknown:
            raise InputError(f"{coco.path}: category ids {sorted(unknown)} are not among the model's classes "
                             f"{[c['name'] for c in self.categories]}")
        by_image = coco.annotations_by_image()
        self.records = []
        for im in coco.images:
            anns = by_image[im["id"]]
            boxes = np.array([[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
                              for a in anns], dtype=np.float32).reshape(-1, 4)
            labels = np.array([self.cat_to_label[a["category_id"]] for a in anns], dtype=np.int64)
            # Not trained on: VOC "difficult" objects and COCO crowd regions (both ignored by the metrics too).
            difficult = np.array([bool(a.get("difficult", 0)) or bool(a.get("iscrowd", 0)) for a in anns], dtype=bool)
            self.records.append((im, boxes, labels, difficult))
        self._cache: list[torch.Tensor | None] = [None] * len(self.records)
        if cache:
            for i in range(len(self.records)):
                self._cache[i] = self._load(i)

    def __len__(self) -> int:
        return len(self.records)

    def scale_for(self, im: dict) -> tuple[float, float]:
        """(sx, sy): input pixels per original pixel."""
        H, W = self.input_size
        sx, sy = W / im["width"], H / im["height"]
        if self.keep_ratio:
            sx = sy = min(sx, sy)
        return sx, sy

    def _load(self, i: int) -> torch.Tensor:
        im = self.records[i][0]
        where = f"{self.coco.path}: image id {im['id']}"
        pil = read_image(check_file_name(self.images_dir, im["file_name"], where), where)
        if pil.size != (int(round(im["width"])), int(round(im["height"]))):
            stored = stored_size(self.images_dir / im["file_name"])
            why = (f" (stored {stored[0]}x{stored[1]}, shown turned by its EXIF orientation as annotation tools "
                   f"show it; the annotations were made on the stored frame: re-export them from a tool that "
                   f"applies EXIF orientation, or save the image without the tag)"
                   if stored != pil.size else "")
            raise InputError(f"{where}: image file is {pil.size[0]}x{pil.size[1]}{why} but the annotation says "
                             f"{im['width']}x{im['height']}")
        H, W = self.input_size
        sx, sy = self.scale_for(im)
        new_w, new_h = max(1, round(im["width"] * sx)), max(1, round(im["height"] * sy))
        if (new_w, new_h) != pil.size:
            pil = pil.resize((new_w, new_h), Image.BILINEAR)
        arr = np.zeros((H, W, 3), dtype=np.uint8)
        arr[:new_h, :new_w] = np.asarray(pil)[:H, :W]
        return torch.from_numpy(arr).permute(2, 0, 1).contiguous()  # uint8, CHW

    def __getitem__(self, i: int):
        img = self._cache[i] if self._cache[i] is not None else self._load(i)
        im, boxes, labels, difficult = self.records[i]
        sx, sy = self.scale_for(im)
        b = torch.from_numpy(boxes) * torch.tensor([sx, sy, sx, sy])
        target = {"boxes": b, "labels": torch.from_numpy(labels), "difficult": torch.from_numpy(difficult),
                  "image_id": im["id"], "scale": (sx, sy), "orig_size": (im["height"], im["width"])}
        return img, target


def collate(batch):
    """Stack images (uint8 -> float in [0, 1]); keep per-image targets as a list."""
    images = torch.stack([b[0] for b in batch]).float().div_(255.0)
    return images, [b[1] for b in batch]


def augment_batch(images: torch.Tensor, targets: list[dict], generator: torch.Generator, cfg: dict) -> None:
    """Random geometric and photometric augmentation of a batch, in place, boxes with it.

    Geometry: a horizontal flip, then a zoom about the image centre by ``scale`` in ``cfg["scale"]``
    and a shift of up to ``translate`` of the side (nearest-neighbour resampling, zero fill — the
    defaults of torchvision v2's ``affine``); boxes follow and are clamped to the canvas, and a box
    keeping less than half of its (zoomed) area inside the image is dropped with its label.
    Photometric: inversion (dark-on-light vs light-on-dark) and a channel permutation (tint).

    The whole batch is resampled by one ``affine_grid`` / ``grid_sample`` call: torchvision's
    per-image ``affine`` on image and ``BoundingBoxes`` cost a fifth of a training step of the
    tiny detector in its Python loop. ``images``: float (B, C, H, W); ``targets[i]["boxes"]``: xyxy.
    """
    B = len(targets)
    H, W = images.shape[-2:]
    r = torch.rand(B, 6, generator=generator)
    t, (s_lo, s_hi) = cfg["translate"], cfg["scale"]
    flip = (r[:, 0] < 0.5) if cfg["hflip"] else torch.zeros(B, dtype=torch.bool)
    if flip.any():
        images[flip] = images[flip].flip(-1)
    geometric = t > 0 or s_lo != 1 or s_hi != 1
    if geometric:
        dx, dy = (2 * r[:, 1] - 1) * t * W, (2 * r[:, 2] - 1) * t * H
        scale = s_lo + (s_hi - s_lo) * r[:, 3]
        # output pixel p comes from input (p - c - d) / scale + c, in grid_sample's [-1, 1] coordinates
        theta = torch.zeros(B, 2, 3)
        theta[:, 0, 0] = theta[:, 1, 1] = 1.0 / scale
        theta[:, 0, 2] = -(2 * dx / W) / scale
        theta[:, 1, 2] = -(2 * dy / H) / scale
        grid = torch.nn.functional.affine_grid(theta, list(images.shape), align_corners=False)
        images.copy_(torch.nn.functional.grid_sample(images, grid, mode="nearest", padding_mode="zeros",
                                                     align_corners=False))
    invert = r[:, 4] < cfg["invert"]
    if invert.any():
        images[invert] = 1.0 - images[invert]
    for i in range(B):
        if cfg["channel_shuffle"]:
            images[i] = images[i][torch.randperm(3, generator=generator)]
        boxes = targets[i]["boxes"]
        if flip[i]:
            boxes = torch.stack([W - boxes[:, 2], boxes[:, 1], W - boxes[:, 0], boxes[:, 3]], dim=1)
        if geometric and len(boxes):
            s_i = float(scale[i])
            cx, cy = W / 2, H / 2
            moved = torch.stack([(boxes[:, 0] - cx) * s_i + cx + dx[i], (boxes[:, 1] - cy) * s_i + cy + dy[i],
                                 (boxes[:, 2] - cx) * s_i + cx + dx[i], (boxes[:, 3] - cy) * s_i + cy + dy[i]], dim=1)
            area0 = (moved[:, 2] - moved[:, 0]) * (moved[:, 3] - moved[:, 1])
            boxes = torch.stack([moved[:, 0].clamp(0, W), moved[:, 1].clamp(0, H),
                                 moved[:, 2].clamp(0, W), moved[:, 3].clamp(0, H)], dim=1)
            area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
            keep = area >= 0.5 * area0
            boxes, targets[i]["labels"] = boxes[keep], targets[i]["labels"][keep]
        targets[i]["boxes"] = boxes.float() if boxes.dtype != torch.float32 else boxes


def training_categories(params: dict, labeled: CocoData) -> list[dict]:
    """The detector's classes for a labeled set, in category-id order.

    A pipeline labeled set (init-split marked it) keeps the categories chosen on the whole pool; a
    labeled file of one's own (the human-in-the-loop path, where it is all the labels there are) loses
    those no annotation names, unless ``dataset.keep_unused_categories``.
    """
    from .coco import POOL_CATEGORIES_KEY, without_unused_categories

    if not params["dataset"]["keep_unused_categories"] and not labeled.info.get(POOL_CATEGORIES_KEY):
        labeled = without_unused_categories(labeled, "the labeled set")
    return sorted(labeled.categories, key=lambda c: c["id"])


def detector_dataset(params: dict, coco: CocoData, images_dir, categories: list[dict] | None = None
                     ) -> DetectionDataset:
    """The detector's dataset of ``coco`` as params ``dataset`` says (input size, aspect, caching).

    ``categories`` None: a training set, whose classes :func:`training_categories` chooses; otherwise the
    model's classes (scoring, evaluation).
    """
    ds = params["dataset"]
    if categories is None:
        categories = training_categories(params, coco)
    return DetectionDataset(coco, images_dir, ds["input_size"], ds["keep_ratio"], ds["cache_images"], categories)
