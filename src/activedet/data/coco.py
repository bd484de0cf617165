"""COCO-JSON detection data: the one data path for every dataset.

The embedded digit scenes, a user's own annotations, COCO itself and (after
conversion) PASCAL VOC all go through :func:`load_coco` and
:class:`activedet.data.dataset.DetectionDataset`. This module does not import
torch, so the light pipeline steps (split, select, merge) start quickly. Annotation files are validated up front so a bad
file fails with a message naming the file, the image or annotation id and the
problem, before any training starts.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterable

from ..io import InputError, read_json


@dataclass
class CocoData:
    """A validated COCO dataset held in memory."""

    path: str  # where it came from, for error messages
    images: list[dict]
    annotations: list[dict]
    categories: list[dict]
    info: dict

    @property
    def image_ids(self) -> list[int]:
        return [im["id"] for im in self.images]

    def to_dict(self) -> dict:
        return {"info": self.info, "images": self.images, "annotations": self.annotations,
                "categories": self.categories}

    def subset(self, image_ids: Iterable[int]) -> "CocoData":
        """Images (in the given order) and their annotations; unknown ids are an error."""
        by_id = {im["id"]: im for im in self.images}
        ids = list(image_ids)
        missing = [i for i in ids if i not in by_id]
        if missing:
            raise InputError(f"{self.path}: image ids not in this dataset: {missing[:10]}")
        wanted = set(ids)
        return CocoData(self.path, [by_id[i] for i in ids],
                        [a for a in self.annotations if a["image_id"] in wanted],
                        self.categories, self.info)

    def annotations_by_image(self) -> dict[int, list[dict]]:
        out: dict[int, list[dict]] = {im["id"]: [] for im in self.images}
        for a in self.annotations:
            out[a["image_id"]].append(a)
        return out


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def check_file_name(images_dir: str | Path, file_name: str, where: str) -> Path:
    """Resolve ``file_name`` inside ``images_dir``; refuse names that escape it."""
    if not isinstance(file_name, str) or not file_name:
        raise InputError(f"{where}: file_name must be a non-empty string")
    posix = PurePosixPath(file_name.replace("\\", "/"))
    if posix.is_absolute() or Path(file_name).is_absolute() or ".." in posix.parts:
        raise InputError(f"{where}: file_name {file_name!r} escapes the images folder (absolute paths and '..' are refused)")
    return Path(images_dir) / Path(*posix.parts)


def _checked_box(a: dict, size: tuple[float, float], where: str, on_box_outside: str, warnings: list[str]):
    """An annotation's bbox as floats [x, y, w, h]: four numbers, positive size, clipped to the image (with a
    warning) or refused per ``on_box_outside``."""
    box = a.get("bbox")
    if not (isinstance(box, (list, tuple)) and len(box) == 4 and all(_is_number(v) for v in box)):
        raise InputError(f"{where}: 'bbox' must be four numbers [x, y, width, height], got {box!r}")
    x, y, w, h = (float(v) for v in box)
    if w <= 0 or h <= 0:
        raise InputError(f"{where}: box {box} has zero or negative size")
    W, H = size
    x1, y1, x2, y2 = x, y, x + w, y + h
    eps = 1e-3
    if x1 < -eps or y1 < -eps or x2 > W + eps or y2 > H + eps:
        if on_box_outside == "error":
            raise InputError(f"{where}: box {box} lies outside image {a['image_id']} of size {W:g}x{H:g} "
                             f"(set dataset.on_box_outside: clip to clip such boxes)")
        cx1, cy1, cx2, cy2 = max(x1, 0.0), max(y1, 0.0), min(x2, W), min(y2, H)
        if cx2 - cx1 <= 0 or cy2 - cy1 <= 0:
            raise InputError(f"{where}: box {box} lies entirely outside image {a['image_id']} of size {W:g}x{H:g}")
        warnings.append(f"{where}: box {box} clipped to image {a['image_id']} of size {W:g}x{H:g}")
        x, y, w, h = cx1, cy1, cx2 - cx1, cy2 - cy1
    return x, y, w, h


def validate_coco(data: dict, path: str, on_box_outside: str = "clip",
                  require_categories: bool = True) -> tuple[CocoData, list[str]]:
    """Check structure and references; return the dataset and warnings (clipped boxes).

    Boxes reaching outside their image are clipped (with a warning) or refused,
    per ``on_box_outside``; zero/negative-size boxes are always refused.
    """
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a COCO JSON object with 'images', 'annotations', 'categories'")
    for key in ("images", "annotations", "categories"):
        if key not in data:
            raise InputError(f"{path}: missing the '{key}' list")
        if not isinstance(data[key], list):
            raise InputError(f"{path}: '{key}' must be a list")
    warnings: list[str] = []

    categories = []
    cat_ids: set[int] = set()
    for c in data["categories"]:
        if not isinstance(c, dict) or not _is_int(c.get("id")) or "name" not in c:
            raise InputError(f"{path}: category {c!r} needs an integer 'id' and a 'name'")
        if c["id"] in cat_ids:
            raise InputError(f"{path}: duplicate category id {c['id']}")
        cat_ids.add(c["id"])
        categories.append({"id": c["id"], "name": str(c["name"])})
    if require_categories and not categories:
        raise InputError(f"{path}: no categories: a detection dataset needs at least one class")

    images = []
    sizes: dict[int, tuple[float, float]] = {}
    for im in data["images"]:
        if not isinstance(im, dict) or not _is_int(im.get("id")):
            raise InputError(f"{path}: image entry {str(im)[:80]} needs an integer 'id'")
        where = f"{path}: image id {im['id']}"
        if im["id"] in sizes:
            raise InputError(f"{path}: duplicate image id {im['id']}")
        for k in ("width", "height"):
            if not _is_number(im.get(k)) or im[k] <= 0:
                raise InputError(f"{where}: '{k}' must be a positive number, got {im.get(k)!r}")
        check_file_name(".", im.get("file_name"), where)
        sizes[im["id"]] = (float(im["width"]), float(im["height"]))
        images.append(dict(im))

    annotations = []
    ann_ids: set = set()
    for a in data["annotations"]:
        if not isinstance(a, dict):
            raise InputError(f"{path}: annotation {str(a)[:80]} is not an object")
        aid = a.get("id")
        where = f"{path}: annotation id {aid}"
        if aid is not None:
            if not _is_int(aid):
                raise InputError(f"{where}: annotation 'id' must be an integer")
            if aid in ann_ids:
                raise InputError(f"{path}: duplicate annotation id {aid}")
            ann_ids.add(aid)
        if not _is_int(a.get("image_id")) or a["image_id"] not in sizes:
            raise InputError(f"{where}: refers to unknown image id {a.get('image_id')!r}")
        if not _is_int(a.get("category_id")) or a["category_id"] not in cat_ids:
            raise InputError(f"{where}: refers to unknown category id {a.get('category_id')!r} "
                             f"(known: {sorted(cat_ids)})")
        x, y, w, h = _checked_box(a, sizes[a["image_id"]], where, on_box_outside, warnings)
        ann = dict(a)
        ann["bbox"] = [x, y, w, h]
        ann.setdefault("area", w * h)
        ann.setdefault("iscrowd", 0)
        annotations.append(ann)
    # Give id-less annotations unique ids (pycocotools needs them).
    next_id = max(ann_ids, default=0) + 1
    for ann in annotations:
        if ann.get("id") is None:
            ann["id"] = next_id
            next_id += 1
    info = data.get("info") if isinstance(data.get("info"), dict) else {}
    return CocoData(path, images, annotations, categories, info), warnings


# Written into a labeled set's ``info`` by init-split: its category list was already chosen against the
# whole pool (unannotated categories left out there), so training keeps it as it is.
POOL_CATEGORIES_KEY = "categories_chosen_on_pool"


def unused_categories(coco: CocoData) -> list[dict]:
    """The categories no annotation of ``coco`` names (grouping entries such as Roboflow's supercategory)."""
    used = {a["category_id"] for a in coco.annotations}
    return [c for c in coco.categories if c["id"] not in used]


def without_unused_categories(coco: CocoData, what: str) -> CocoData:
    """``coco`` with the categories no annotation names left out, reported on stdout.

    A detector class without a single box is never learned, takes a share of EBAL's minority quota
    and is offered to annotators; ``dataset.keep_unused_categories: true`` keeps them (the caller
    then does not call this). ``what`` names the data in the report ("the pool").
    """
    unused = unused_categories(coco)
    if not unused:
        return coco
    names = ", ".join(f"{c['id']} {c['name']!r}" for c in unused)
    print(f"warning: {coco.path}: categories {names} have no annotation in {what}; left out of the detector's "
          f"classes, the selection quotas and the labeling configs (set dataset.keep_unused_categories: true "
          f"to keep them)")
    gone = {c["id"] for c in unused}
    return CocoData(coco.path, coco.images, coco.annotations, [c for c in coco.categories if c["id"] not in gone],
                    coco.info)


def load_coco(path: str | Path, on_box_outside: str = "clip", allow_empty: bool = False) -> CocoData:
    data = read_json(path)
    coco, warnings = validate_coco(data, str(path), on_box_outside)
    for w in warnings[:20]:
        print(f"warning: {w}")
    if len(warnings) > 20:
        print(f"warning: {path}: {len(warnings) - 20} more boxes clipped")
    if not coco.images and not allow_empty:
        raise InputError(f"{path}: the dataset has no images")
    return coco
