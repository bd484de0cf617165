"""An annotator that answers with ground truth: it stands in for people in the walkthrough and the tests.

It reads the Label Studio tasks of a selection (``label_studio_tasks.json``),
finds each task's image in a ground-truth COCO file by file name and answers
with the true boxes, written as the annotation tool would export them: Label
Studio's JSON export (default), CVAT for images 1.1 XML or COCO JSON.
"""
from __future__ import annotations

from pathlib import Path

from ..data.coco import load_coco
from ..io import InputError, read_json, write_json, write_text
from . import cvat, label_studio
from .boxes import Box
from .importer import resolve_reference

FORMATS = ("label_studio", "cvat", "coco")


def simulate_annotator(tasks_path: str | Path, ground_truth_path: str | Path, out_path: str | Path,
                       fmt: str = "label_studio") -> dict:
    if fmt not in FORMATS:
        raise InputError(f"unknown format {fmt!r} (known: {', '.join(FORMATS)})")
    tasks = read_json(tasks_path)
    if not isinstance(tasks, list):
        raise InputError(f"{tasks_path}: expected the list of Label Studio tasks (label_studio_tasks.json)")
    gt = load_coco(ground_truth_path)
    by_name = {Path(im["file_name"].replace("\\", "/")).as_posix(): im for im in gt.images}
    anns = gt.annotations_by_image()
    label = {c["id"]: c["name"] for c in gt.categories}
    answered = []  # (task data, image record, true boxes in pixels)
    for n, t in enumerate(tasks, start=1):
        ref = label_studio.image_reference(t.get("data", {})) if isinstance(t, dict) else None
        name = resolve_reference(ref, list(by_name)) if ref else None
        if name is None:
            raise InputError(f"{tasks_path}: task #{n} (image {ref!r}) is not an image of {ground_truth_path}")
        im = by_name[name]
        boxes = [Box(label[a["category_id"]], *a["bbox"]) for a in anns[im["id"]]]
        answered.append((t["data"], im, boxes))
    if fmt == "label_studio":
        export = [label_studio.export_task(n, data, boxes, im["width"], im["height"])
                  for n, (data, im, boxes) in enumerate(answered, start=1)]
        write_json(out_path, export)
    elif fmt == "cvat":
        write_text(out_path, cvat.annotations_xml([(im["file_name"], im["width"], im["height"], boxes)
                                                   for _, im, boxes in answered],
                                                  [c["name"] for c in gt.categories], "simulated annotator",
                                                  source="manual"))
    else:
        images = [{"id": im["id"], "file_name": im["file_name"], "width": im["width"], "height": im["height"]}
                  for _, im, _ in answered]
        annotations = [dict(a) for _, im, _ in answered for a in anns[im["id"]]]
        write_json(out_path, {"images": images, "annotations": annotations, "categories": gt.categories})
    return {"tasks": len(answered), "boxes": sum(len(b) for _, _, b in answered), "format": fmt}
