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

import numpy as np
from urllib.parse import quote

from ..io import InputError
from .boxes import PALETTE, AnnotatedImage, Box, SelectedImage, enclosing_box, rotated_corners

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


# How one task's several submitted annotations (several annotators) become one: the one marked ground truth,
# else the latest submitted (with a warning); or refuse unless exactly one is marked ground truth.
SEVERAL_RULES = ("ground_truth_or_latest", "refuse")
# Result types that draw a region, with the key of their label list in ``value``; the unlabeled tools
# (<Rectangle> + <Labels>) write the region and a "labels" result with the same id.
REGION_TYPES = {"rectanglelabels": "rectanglelabels", "rectangle": None, "polygonlabels": "polygonlabels",
                "polygon": None, "brushlabels": "brushlabels", "brush": None, "ellipselabels": "ellipselabels",
                "ellipse": None}
# Per-region results kept as the region's attributes: result type -> the key of its value (under its from_name).
ATTRIBUTE_TYPES = {"choices": "choices", "textarea": "text", "rating": "rating", "number": "number",
                   "datetime": "datetime", "taxonomy": "taxonomy"}


def _when(annotation: dict, index: int) -> tuple:
    """Sort key of a submission: its update (else creation) time, then its id, then its place in the list."""
    from datetime import datetime, timezone

    stamp = annotation.get("updated_at") or annotation.get("created_at")
    try:
        t = datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
        t = t if t.tzinfo else t.replace(tzinfo=timezone.utc)
        seconds = t.timestamp()
    except ValueError:
        seconds = float("-inf")
    aid = annotation.get("id")
    return seconds, aid if isinstance(aid, int) and not isinstance(aid, bool) else -1, index


def _chosen_annotation(annotations: list, where: str, several: str = "ground_truth_or_latest",
                       warnings: list[str] | None = None) -> dict | None:
    """The one submitted annotation of a task (cancelled ones do not count), per ``several`` (:data:`SEVERAL_RULES`)."""
    live = [a for a in annotations if isinstance(a, dict) and not a.get("was_cancelled")]
    if len(live) <= 1:
        return live[0] if live else None
    marked = [a for a in live if a.get("ground_truth")]
    if len(marked) == 1:
        return marked[0]
    if several == "refuse":
        raise InputError(f"{where}: {len(live)} submitted annotations and {len(marked)} marked as ground "
                         f"truth; mark exactly one as ground truth in Label Studio (or cancel the others), or "
                         f"import with --several-annotations ground_truth_or_latest to take the latest")
    among = marked or live
    index = max(range(len(among)), key=lambda i: _when(among[i], i))
    chosen = among[index]
    if warnings is not None:
        stamp = chosen.get("updated_at") or chosen.get("created_at") or "no time stamp"
        warnings.append(f"{where}: {len(live)} submitted annotations, {len(marked)} marked as ground truth: took the "
                        f"latest{' marked one' if marked else ''} (annotation {chosen.get('id')!r}, {stamp})")
    return chosen


def parse_export(data, path: str, regions: str = "enclosing_box", several: str = "ground_truth_or_latest",
                 warnings: list[str] | None = None) -> list[AnnotatedImage]:
    """Images of a Label Studio JSON export; a task with no submitted annotation is left out (not annotated).

    Boxes stay in percent (``percent=True``): the importer converts them with the selected image's size.
    Rectangles are boxes; polygons, brushes, ellipses and rotated rectangles become their enclosing
    boxes (``regions="enclosing_box"``) or are skipped (``"skip"``). Per-region choices, text, ratings
    (results sharing a region's id) become the box's attributes; results that draw no region or belong
    to none (key points, whole-image choices, relations) are skipped. Every skip is named in
    ``warnings``; several submissions on one task follow ``several`` (:data:`SEVERAL_RULES`).
    """
    warnings = [] if warnings is None else warnings
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
        chosen = _chosen_annotation(annotations, named, several, warnings)
        if chosen is None:
            continue
        result = chosen.get("result", [])
        if not isinstance(result, list):
            raise InputError(f"{named}: annotations[].result must be a list")
        image = AnnotatedImage(ref, where, None, None, [], percent=True, seconds=_lead_time(chosen, named))
        image.boxes.extend(_regions(result, named, image, regions, warnings))
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


def _regions(result: list, where: str, image: AnnotatedImage, regions: str, warnings: list[str]) -> list[Box]:
    """The boxes (percent) of one annotation's result list."""
    drawn: dict[object, dict] = {}  # region id -> its result item(s), in order
    order: list[object] = []
    extras: list[dict] = []
    for k, item in enumerate(result):
        if not isinstance(item, dict):
            raise InputError(f"{where}: result item {str(item)[:80]} is not an object")
        if item.get("type") in REGION_TYPES:
            key = item.get("id") if item.get("id") not in (None, "") else f"#{k}"
            if key in drawn:
                raise InputError(f"{where}: two regions share the id {key!r}")
            drawn[key] = item
            order.append(key)
        else:
            extras.append(item)
    labels: dict[object, list] = {}
    attributes: dict[object, dict] = {}
    for item in extras:
        kind, rid, name = item.get("type"), item.get("id"), item.get("from_name")
        value = item.get("value") if isinstance(item.get("value"), dict) else {}
        if kind == "labels" and rid in drawn:
            labels[rid] = value.get("labels")
        elif kind in ATTRIBUTE_TYPES and rid in drawn:
            attributes.setdefault(rid, {})[str(name)] = value.get(ATTRIBUTE_TYPES[kind])
        else:
            what = "belongs to no region" if kind in ATTRIBUTE_TYPES or kind == "labels" else "draws no box"
            warnings.append(f"{where}: result of type {kind!r} (from_name {name!r}) skipped: it {what}")
    boxes = []
    for key in order:
        box = _box(drawn[key], where, image, labels.get(key), attributes.get(key), regions, warnings)
        if box is not None:
            boxes.append(box)
    return boxes


def _size(item: dict, where: str, image: AnnotatedImage) -> None:
    for key, dim in (("original_width", "width"), ("original_height", "height")):
        if key in item:
            size = _number(item[key], where, key)
            if getattr(image, dim) is not None and getattr(image, dim) != size:
                raise InputError(f"{where}: results disagree on the image {dim} ({getattr(image, dim):g} and {size:g})")
            setattr(image, dim, size)


def _box(item: dict, where: str, image: AnnotatedImage, labels, attributes: dict | None, regions: str,
         warnings: list[str]) -> Box | None:
    """The box (percent of the image) of one region result, or None when skipped (with a warning)."""
    box_name = f"region {item['id']!r}" if item.get("id") else "a region"
    kind = item["type"]
    _size(item, where, image)
    value = item.get("value")
    if not isinstance(value, dict):
        raise InputError(f"{where}: {box_name} has no 'value' object")
    if labels is None and REGION_TYPES[kind]:
        labels = value.get(REGION_TYPES[kind])
    if not (isinstance(labels, list) and len(labels) == 1 and isinstance(labels[0], str)):
        raise InputError(f"{where}: {box_name} must have exactly one label, got {labels!r}")
    label = labels[0]
    rotation = _number(value.get("rotation", 0), where, "value.rotation")
    shape = kind.replace("labels", "")
    if shape == "rectangle":
        x, y, w, h = (_number(value.get(k), where, f"value.{k}") for k in ("x", "y", "width", "height"))
        if abs(rotation) <= 1e-6:
            return Box(label, x, y, w, h, attributes=attributes)
    if regions == "skip":
        warnings.append(f"{where}: {box_name} ({kind}{', rotated' if shape == 'rectangle' else ''}, label "
                        f"{label!r}) skipped (--regions skip; enclosing_box imports its enclosing box)")
        return None
    if shape == "polygon":
        points = value.get("points")
        if not (isinstance(points, list) and points and all(isinstance(p, list) and len(p) == 2 for p in points)):
            raise InputError(f"{where}: {box_name} (polygon) needs 'points' as [[x, y], ...], got {str(points)[:60]}")
        xs = [_number(p[0], where, "value.points") for p in points]
        ys = [_number(p[1], where, "value.points") for p in points]
        return enclosing_box(label, xs, ys, attributes)
    if shape == "brush":
        return _brush_box(item, value, where, box_name, label, attributes, warnings)
    # a rotated rectangle (turned about its top-left corner) or an ellipse: in pixels, then back to percent
    if shape == "ellipse":
        cx, cy, rx, ry = (_number(value.get(k), where, f"value.{k}") for k in ("x", "y", "radiusX", "radiusY"))
        if abs(rotation) <= 1e-6:
            return enclosing_box(label, [cx - rx, cx + rx], [cy - ry, cy + ry], attributes)
    W, H = image.width, image.height
    if not W or not H:
        raise InputError(f"{where}: {box_name} is rotated by {rotation:g} degrees but the result has no "
                         f"original_width/original_height to turn it in pixels")
    if shape == "rectangle":
        px, py = rotated_corners(x * W / 100, y * H / 100, [0, w * W / 100, w * W / 100, 0],
                                 [0, 0, h * H / 100, h * H / 100], rotation)
    else:  # ellipse about its centre: half-widths of its enclosing box
        c, s = math.cos(math.radians(rotation)), math.sin(math.radians(rotation))
        ex, ey = math.hypot(rx * W / 100 * c, ry * H / 100 * s), math.hypot(rx * W / 100 * s, ry * H / 100 * c)
        px, py = [cx * W / 100 - ex, cx * W / 100 + ex], [cy * H / 100 - ey, cy * H / 100 + ey]
    return enclosing_box(label, [100 * v / W for v in px], [100 * v / H for v in py], attributes)


def decode_brush_rle(rle: list[int]) -> np.ndarray:
    """Label Studio's brush RLE -> the flat RGBA bytes of the mask (height x width x 4).

    The format of label_studio_converter.brush (``decode_rle``), not a dependency here for one function:
    a bit stream holding the value count (32 bits), word size - 1 (5 bits), four run-length field sizes - 1
    (4 bits each), then blocks: 1 bit "run", 2 bits choosing the length field, length - 1; a run repeats one
    word, else that many words follow.
    """
    bits = "".join(f"{b:08b}" for b in bytes(rle))
    pos = 0

    def read(n: int) -> int:
        nonlocal pos
        if pos + n > len(bits):
            raise ValueError("the bit stream ends early")
        value = int(bits[pos:pos + n], 2) if n else 0
        pos += n
        return value

    count = read(32)
    word = read(5) + 1
    sizes = [read(4) + 1 for _ in range(4)]
    out, i = np.zeros(count, dtype=np.int64), 0
    while i < count:
        run = read(1)
        j = min(count, i + 1 + read(sizes[read(2)]))
        if run:
            v = read(word)
            out[i:j] = v
            i = j
        else:
            while i < j:
                out[i] = read(word)
                i += 1
    return out


def _brush_box(item: dict, value: dict, where: str, box_name: str, label: str, attributes, warnings) -> Box | None:
    rle = value.get("rle")
    W, H = item.get("original_width"), item.get("original_height")
    if value.get("format", "rle") != "rle" or not isinstance(rle, list):
        raise InputError(f"{where}: {box_name} (brush) has no 'rle' list (format {value.get('format')!r})")
    if not (isinstance(W, int) and isinstance(H, int) and W > 0 and H > 0):
        raise InputError(f"{where}: {box_name} (brush) needs integer original_width and original_height")
    try:
        flat = decode_brush_rle(rle)
    except (ValueError, TypeError) as e:
        raise InputError(f"{where}: {box_name} (brush): unreadable rle ({e})") from None
    if len(flat) != W * H * 4:
        raise InputError(f"{where}: {box_name} (brush): the rle holds {len(flat)} values, not the "
                         f"{W}x{H}x4 of the image")
    rows, cols = np.nonzero(flat[3::4].reshape(H, W))  # the alpha channel is the mask
    if not len(rows):
        warnings.append(f"{where}: {box_name} (brush, label {label!r}) skipped: the mask is empty")
        return None
    return enclosing_box(label, [100 * int(cols.min()) / W, 100 * (int(cols.max()) + 1) / W],
                         [100 * int(rows.min()) / H, 100 * (int(rows.max()) + 1) / H], attributes)
