"""The annotation package of a selection: what a person needs to annotate the chosen images.

Written into one folder:

| file | what |
|---|---|
| ``selected.csv`` | rank, image (path relative to the images folder), image_id, score, width, height |
| ``label_studio_tasks.json`` | Label Studio import tasks, the model's boxes as pre-annotations |
| ``label_studio_config.xml`` | the matching Label Studio labeling interface |
| ``cvat_annotations.xml`` | CVAT for images 1.1, the model's boxes (source="auto") to upload into a task |
| ``predictions.json`` | COCO JSON: the chosen images and every detection with its score |
| ``selected.png`` | contact sheet: the chosen images with the model's boxes |
| ``README.txt`` | what to do next, with the exact import command |
"""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from ..io import InputError, check_not_foreign, record_written, write_json, write_text
from . import cvat, label_studio
from .boxes import DEFAULT_MIN_SCORE, Box, SelectedImage, clip_to_image
from .sheet import contact_sheet

SELECTED_COLUMNS = ("rank", "image", "image_id", "score", "width", "height")
PACKAGE_FILES = ("selected.csv", "label_studio_tasks.json", "label_studio_config.xml", "cvat_annotations.xml",
                 "predictions.json", "selected.png", "README.txt")


def write_selected_csv(path: str | Path, selection: list[SelectedImage]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(SELECTED_COLUMNS)
    for s in selection:
        writer.writerow([s.rank, s.image, s.image_id, "" if s.score is None else repr(s.score), s.width, s.height])
    write_text(path, buf.getvalue())


def read_selected_csv(path: str | Path) -> list[SelectedImage]:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: selection file not found (select-images or the pipeline's export writes it)")
    try:
        with open(path, encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f))
    except (UnicodeDecodeError, csv.Error) as e:
        raise InputError(f"{path}: not a readable selection CSV ({e})") from None
    header = rows[0].keys() if rows else []
    missing = [c for c in SELECTED_COLUMNS if c not in header]
    if rows and missing:
        raise InputError(f"{path}: missing columns {missing} (expected {', '.join(SELECTED_COLUMNS)})")
    if not rows:
        raise InputError(f"{path}: the selection is empty")
    selection = []
    for line, row in enumerate(rows, start=2):
        try:
            score = float(row["score"]) if row["score"] not in ("", None) else None
            if score is not None and not math.isfinite(score):
                score = None
            selection.append(SelectedImage(int(row["rank"]), row["image"], int(row["image_id"]), int(row["width"]),
                                           int(row["height"]), score))
        except (TypeError, ValueError):
            raise InputError(f"{path}: line {line}: cannot read {dict(row)} (rank, image_id, width and height "
                             f"must be integers, score a number or empty)") from None
    for key in ("image", "image_id"):
        values = [getattr(s, key) for s in selection]
        if len(set(values)) != len(values):
            raise InputError(f"{path}: an {key} is listed twice")
    return selection


def boxes_by_image(detections: list[dict], selection: list[SelectedImage], categories: list[dict],
                   min_score: float) -> dict[int, list[Box]]:
    """The detections (COCO results) of the selected images as boxes at or above ``min_score``, clipped
    to their image (a letterboxed input can put a box edge past it); highest score first."""
    names = {c["id"]: c["name"] for c in categories}
    size = {s.image_id: (s.width, s.height) for s in selection}
    out: dict[int, list[Box]] = {s.image_id: [] for s in selection}
    for d in sorted(detections, key=lambda d: -d["score"]):
        if d["image_id"] not in size or d["score"] < min_score:
            continue
        x, y, w, h = d["bbox"]
        box = clip_to_image(Box(names[d["category_id"]], x, y, w, h, d["score"]), *size[d["image_id"]])
        if box is not None:
            out[d["image_id"]].append(box)
    return out


def predictions_coco(selection: list[SelectedImage], detections: list[dict], categories: list[dict],
                     info: dict) -> dict:
    """COCO JSON of the chosen images and every detection of them (with ``score``)."""
    ids = {s.image_id for s in selection}
    annotations = []
    for d in detections:
        if d["image_id"] in ids:
            x, y, w, h = d["bbox"]
            annotations.append({"id": len(annotations) + 1, "image_id": d["image_id"], "category_id": d["category_id"],
                                "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0, "score": d["score"]})
    images = [{"id": s.image_id, "file_name": s.image, "width": s.width, "height": s.height} for s in selection]
    return {"info": info, "images": images, "annotations": annotations,
            "categories": [{"id": c["id"], "name": c["name"]} for c in categories]}


def readme_text(n_images: int, strategy: str, import_command: str) -> str:
    return f"""\
{n_images} images chosen by the '{strategy}' strategy wait for annotation (best first in selected.csv).

Annotate them with one of:
  Label Studio: create a project with label_studio_config.xml as its labeling interface, serve the images
    folder (LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true, LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT=<images folder>,
    and a Local Storage pointing at it), import label_studio_tasks.json (the model's boxes come as predictions),
    annotate, then Export -> JSON.
  CVAT: create a task with the images listed in selected.csv and the class names as labels (the <labels>
    of cvat_annotations.xml), upload cvat_annotations.xml as 'CVAT 1.1' (the model's boxes), annotate,
    then Export task dataset -> 'CVAT for images 1.1' and take annotations.xml out of the zip.
  Anything else: a COCO JSON with the images' file_name (as in selected.csv) and the boxes.
See selected.png for the chosen images with the model's detections.

Then import the labels (the command checks them against selected.csv and changes nothing if they are wrong):
  {import_command}
"""


def write_annotation_package(out_dir: str | Path, images_dir: str | Path, selection: list[SelectedImage],
                             detections: list[dict], categories: list[dict], *, strategy: str,
                             import_command: str, min_score: float = DEFAULT_MIN_SCORE,
                             url_prefix: str = label_studio.DEFAULT_URL_PREFIX,
                             info: dict | None = None) -> dict[str, Path]:
    """Write every file of the package; return their paths by name."""
    out = Path(out_dir)
    check_not_foreign(out, list(PACKAGE_FILES), "an annotation package")  # never a user's README.txt etc.
    out.mkdir(parents=True, exist_ok=True)
    record_written(out, list(PACKAGE_FILES))  # first: a package killed half-way is still ours to rewrite
    paths = {name: out / name for name in PACKAGE_FILES}
    label_names = [c["name"] for c in sorted(categories, key=lambda c: c["id"])]
    shown = boxes_by_image(detections, selection, categories, min_score)
    model_version = f"activedet {strategy}"

    write_selected_csv(paths["selected.csv"], selection)
    write_json(paths["label_studio_tasks.json"],
               [label_studio.task(s, shown[s.image_id], url_prefix, model_version) for s in selection])
    write_text(paths["label_studio_config.xml"], label_studio.labeling_config(label_names))
    write_text(paths["cvat_annotations.xml"],
               cvat.annotations_xml([(s.image, s.width, s.height, shown[s.image_id]) for s in selection],
                                    label_names, task_name=f"activedet {strategy}: {len(selection)} images"))
    write_json(paths["predictions.json"], predictions_coco(selection, detections, categories, info or {}))
    contact_sheet(paths["selected.png"], images_dir, selection, shown, label_names,
                  f"{len(selection)} images chosen by {strategy}; boxes: detections with score >= {min_score:g}")
    write_text(paths["README.txt"], readme_text(len(selection), strategy, import_command))
    return paths
