"""Label Studio: labeling config, import tasks with pre-annotations, and reading the JSON export.

Formats (https://labelstud.io/guide/tasks, /guide/predictions, /guide/export):

- a task is ``{"data": {"image": URL, ...}, "predictions": [{"model_version", "score",
  "result": [region, ...]}]}``;
- a rectangle region is ``{"id", "from_name", "to_name", "type": "rectanglelabels",
  "original_width", "original_height", "image_rotation", "value": {"x", "y", "width",
  "height", "rotation", "rectanglelabels": [name]}, "score"}`` with x, y, width and height
  in percent (0..100) of the image;
- the JSON export is the list of tasks, each with ``annotations[].result[]`` of such regions and the
  annotation's ``lead_time`` (seconds the annotator spent on it).
"""
from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from urllib.parse import quote

from ..io import InputError
from .boxes import PALETTE, AnnotatedImage, Box, SelectedImage

FROM_NAME = "label"  # name of the RectangleLabels tag in the config
TO_NAME = "image"  # name of the Image tag; tasks carry the image URL in data["image"]
# Label Studio serves files of a local storage under this URL (LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT
# set to the images folder); pass another prefix (http://host/images/) for a web server.
DEFAULT_URL_PREFIX = "/data/local-files/?d="


def labeling_config(label_names: list[str]) -> str:
    """The labeling interface: one image, rectangles with the model's class names."""
    view = ET.Element("View")
    ET.SubElement(view, "Image", name=TO_NAME, value=f"${TO_NAME}", zoom="true")
    rect = ET.SubElement(view, "RectangleLabels", name=FROM_NAME, toName=TO_NAME)
    for i, name in enumerate(label_names):
        ET.SubElement(rect, "Label", value=name, background=PALETTE[i % len(PALETTE)])
    ET.indent(view)
    return ET.tostring(view, encoding="unicode") + "\n"


def image_url(image: str, prefix: str = DEFAULT_URL_PREFIX) -> str:
    return prefix + quote(image, safe="/")


def region(box: Box, width: float, height: float, region_id: str) -> dict:
    """A rectanglelabels result item from a box in pixels."""
    item = {
        "id": region_id, "from_name": FROM_NAME, "to_name": TO_NAME, "type": "rectanglelabels",
        "original_width": int(width), "original_height": int(height), "image_rotation": 0,
        "value": {"x": 100.0 * box.x / width, "y": 100.0 * box.y / height,
                  "width": 100.0 * box.w / width, "height": 100.0 * box.h / height,
                  "rotation": 0, "rectanglelabels": [box.label]},
    }
    if box.score is not None:
        item["score"] = float(box.score)
    return item


def task(image: SelectedImage, boxes: list[Box], url_prefix: str, model_version: str) -> dict:
    """An import task for one selected image, the model's boxes (pixels) as pre-annotations."""
    data = {TO_NAME: image_url(image.image, url_prefix), "file_name": image.image, "rank": image.rank,
            "score": image.score}
    prediction = {"model_version": model_version,
                  "result": [region(b, image.width, image.height, f"r{image.rank}-{k}") for k, b in enumerate(boxes)]}
    if image.score is not None:
        prediction["score"] = image.score  # Label Studio can order tasks by it
    return {"data": data, "predictions": [prediction]}


def export_task(task_id: int, data: dict, boxes: list[Box], width: float, height: float,
                annotator: int = 1) -> dict:
    """A task as Label Studio's JSON export writes it, with one submitted annotation of ``boxes`` (pixels)."""
    result = [region(b, width, height, f"a{task_id}-{k}") for k, b in enumerate(boxes)]
    return {"id": task_id, "data": data, "predictions": [],
            "annotations": [{"id": task_id, "completed_by": annotator, "result": result, "was_cancelled": False,
                             "ground_truth": False, "task": task_id}]}


# ------------------------------------------------------------------------ reading an export
def _number(value, where: str, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(f"{where}: '{key}' must be a number, got {value!r}")
    return float(value)


def image_reference(data: dict) -> str | None:
    """How a task names its image: our own ``file_name`` if the task kept it, else the image URL."""
    for key in ("file_name", TO_NAME):
        if isinstance(data.get(key), str) and data[key]:
            return data[key]
    return None


def _chosen_annotation(annotations: list, where: str) -> dict | None:
    """The one submitted annotation of a task: the one marked ground truth when several people labeled it."""
    live = [a for a in annotations if isinstance(a, dict) and not a.get("was_cancelled")]
    if len(live) > 1:
        marked = [a for a in live if a.get("ground_truth")]
        if len(marked) != 1:
            raise InputError(f"{where}: {len(live)} submitted annotations and {len(marked)} marked as ground "
                             f"truth; mark exactly one as ground truth in Label Studio (or cancel the others)")
        return marked[0]
    return live[0] if live else None


def parse_export(data, path: str) -> list[AnnotatedImage]:
    """Images of a Label Studio JSON export; a task with no submitted annotation is left out (not annotated).

    Boxes stay in percent (``percent=True``): the importer converts them with the selected image's size.
    """
    if not isinstance(data, list):
        raise InputError(f"{path}: a Label Studio JSON export is a list of tasks, got {type(data).__name__}")
    out = []
    for n, t in enumerate(data):
        if not isinstance(t, dict) or not isinstance(t.get("data"), dict):
            raise InputError(f"{path}: task #{n + 1} is not a task object with 'data'")
        where = f"{path}: task {t.get('id', '#' + str(n + 1))}"
        ref = image_reference(t["data"])
        if ref is None:
            raise InputError(f"{where}: the task has no data.image "
                             f"(the labeling config must use <Image value=\"$image\"/>)")
        named = f"{where}: image {ref}"  # format errors name the image too
        annotations = t.get("annotations", [])
        if not isinstance(annotations, list):
            raise InputError(f"{named}: 'annotations' must be a list")
        chosen = _chosen_annotation(annotations, named)
        if chosen is None:
            continue
        result = chosen.get("result", [])
        if not isinstance(result, list):
            raise InputError(f"{named}: annotations[].result must be a list")
        image = AnnotatedImage(ref, where, None, None, [], percent=True, seconds=_lead_time(chosen, named))
        for item in result:
            image.boxes.append(_box(item, named, image))
        out.append(image)
    return out


def _lead_time(annotation: dict, where: str) -> float | None:
    """Seconds the annotator spent on the task (Label Studio's ``lead_time``; absent in older exports)."""
    value = annotation.get("lead_time")
    if value is None:
        return None
    seconds = _number(value, where, "lead_time")
    if seconds < 0:
        raise InputError(f"{where}: 'lead_time' must not be negative, got {seconds:g}")
    return seconds


def _box(item, where: str, image: AnnotatedImage) -> Box:
    if not isinstance(item, dict):
        raise InputError(f"{where}: result item {str(item)[:80]} is not an object")
    box_name = f"box {item['id']!r}" if item.get("id") else "a box"
    kind = item.get("type")
    if kind != "rectanglelabels":
        raise InputError(f"{where}: result of type {kind!r} (from_name {item.get('from_name')!r}) is not supported; "
                         f"only rectanglelabels boxes are imported (use label_studio_config.xml)")
    for key, dim in (("original_width", "width"), ("original_height", "height")):
        if key in item:
            size = _number(item[key], where, key)
            if getattr(image, dim) is not None and getattr(image, dim) != size:
                raise InputError(f"{where}: results disagree on the image {dim} ({getattr(image, dim):g} and {size:g})")
            setattr(image, dim, size)
    value = item.get("value")
    if not isinstance(value, dict):
        raise InputError(f"{where}: {box_name} has no 'value' object")
    x, y, w, h = (_number(value.get(k), where, f"value.{k}") for k in ("x", "y", "width", "height"))
    rotation = _number(value.get("rotation", 0), where, "value.rotation")
    if abs(rotation) > 1e-6:
        raise InputError(f"{where}: {box_name} is rotated by {rotation:g} degrees; only axis-aligned "
                         f"boxes can be imported")
    labels = value.get("rectanglelabels")
    if not (isinstance(labels, list) and len(labels) == 1 and isinstance(labels[0], str)):
        raise InputError(f"{where}: {box_name} must have exactly one label, got {labels!r}")
    return Box(labels[0], x, y, w, h)
