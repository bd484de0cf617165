"""CVAT for images 1.1 XML: pre-annotations to upload into a task, and reading the annotators' export.

Structure (https://docs.cvat.ai/docs/manual/advanced/xml_format/)::

    <annotations>
      <version>1.1</version>
      <meta><task><name/><size/><mode>annotation</mode><labels><label><name/>...</label></labels></task></meta>
      <image id="0" name="sub/a.png" width="640" height="480">
        <box label="car" source="auto" occluded="0" xtl="1.00" ytl="2.00" xbr="30.00" ybr="40.00" z_order="0"/>
      </image>
    </annotations>

Image ids are the index of the image in the lexical order of names, as CVAT numbers a task's frames.
XML is parsed with the standard library's ElementTree, which (Python >= 3.7.1) never resolves external
entities; documents with a DTD are refused outright, so entity expansion cannot happen either.
"""
from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from pathlib import Path

from ..io import InputError, read_xml as io_read_xml
from .boxes import AnnotatedImage, Box, enclosing_box, rotated_corners

VERSION = "1.1"


def annotations_xml(images: list[tuple[str, int, int, list[Box]]], label_names: list[str], task_name: str,
                    source: str = "auto") -> str:
    """CVAT for images 1.1 document; ``images`` are (name, width, height, boxes in pixels)."""
    root = ET.Element("annotations")
    ET.SubElement(root, "version").text = VERSION
    meta = ET.SubElement(root, "meta")
    task = ET.SubElement(meta, "task")
    for key, value in (("name", task_name), ("size", str(len(images))), ("mode", "annotation"),
                       ("overlap", "0"), ("flipped", "False")):
        ET.SubElement(task, key).text = value
    labels = ET.SubElement(task, "labels")
    for name in label_names:
        label = ET.SubElement(labels, "label")
        ET.SubElement(label, "name").text = name
        ET.SubElement(label, "type").text = "rectangle"
        ET.SubElement(label, "attributes")
    for index, (name, width, height, boxes) in enumerate(sorted(images, key=lambda im: im[0])):
        image = ET.SubElement(root, "image", id=str(index), name=name, width=str(int(width)), height=str(int(height)))
        for b in boxes:
            ET.SubElement(image, "box", label=b.label, source=source, occluded="0",
                          xtl=f"{b.x:.2f}", ytl=f"{b.y:.2f}", xbr=f"{b.x + b.w:.2f}", ybr=f"{b.y + b.h:.2f}",
                          z_order="0")
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def read_xml(path: str | Path) -> ET.Element:
    return io_read_xml(path, "file", "CVAT exports")


def _number(element: ET.Element, key: str, where: str) -> float:
    text = element.get(key)
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise InputError(f"{where}: attribute {key}={text!r} must be a number") from None
    if not math.isfinite(value):
        raise InputError(f"{where}: attribute {key}={text!r} must be finite")
    return value


def _points(child: ET.Element, where: str) -> tuple[list[float], list[float]]:
    """The ``points="x1,y1;x2,y2;..."`` of a polygon."""
    text = child.get("points") or ""
    xs, ys = [], []
    for pair in text.split(";"):
        parts = pair.split(",")
        try:
            x, y = (float(v) for v in parts)
        except ValueError:
            raise InputError(f"{where}: <{child.tag}> (label {child.get('label')!r}) has unreadable points "
                             f"{text[:60]!r}") from None
        if not (math.isfinite(x) and math.isfinite(y)):
            raise InputError(f"{where}: <{child.tag}> (label {child.get('label')!r}) has non-finite points")
        xs.append(x)
        ys.append(y)
    return xs, ys


def mask_extent(child: ET.Element, where: str) -> tuple[list[float], list[float]]:
    """Corners of the pixels a CVAT 1.1 ``<mask rle left top width height>`` covers.

    ``rle`` is comma-separated run lengths over the ``width x height`` crop at (left, top), row by row,
    starting with a run of background (0) pixels (CVAT's format for images 1.1). Decoded here: the
    enclosing box needs a few lines, not Datumaro (which is not a dependency).
    """
    left, top, width, height = (int(_number(child, k, where)) for k in ("left", "top", "width", "height"))
    try:
        runs = [int(v) for v in (child.get("rle") or "").split(",") if v.strip()]
    except ValueError:
        raise InputError(f"{where}: <mask> (label {child.get('label')!r}) has an unreadable rle") from None
    if width <= 0 or height <= 0 or any(r < 0 for r in runs) or sum(runs) != width * height:
        raise InputError(f"{where}: <mask> (label {child.get('label')!r}): its rle covers {sum(runs)} pixels, "
                         f"not the {width}x{height} of the mask")
    cols, rows, start = [], [], 0
    for k, run in enumerate(runs):
        if k % 2 == 1 and run:  # odd runs are the mask's pixels
            for i in (start, start + run - 1):  # first and last pixel of the run, and the rows between
                rows.append(i // width)
            first_row, last_row = start // width, (start + run - 1) // width
            if first_row == last_row:
                cols += [start % width, (start + run - 1) % width]
            else:  # the run wraps over a row end: it touches both image edges of the crop
                cols += [0, width - 1]
        start += run
    if not cols:
        return [], []
    return [left + min(cols), left + max(cols) + 1], [top + min(rows), top + max(rows) + 1]


def parse_annotations(path: str | Path, regions: str = "enclosing_box",
                      warnings: list[str] | None = None) -> list[AnnotatedImage]:
    """Images of a CVAT for images 1.1 export with their boxes (pixels).

    ``<box>`` elements are boxes (a rotated one: its enclosing box). Polygons, masks and ellipses
    become their enclosing boxes with ``regions="enclosing_box"`` or are skipped with ``"skip"``;
    polylines, points, skeletons, cuboids and tags hold no box and are skipped. Every skipped shape
    is named in ``warnings``. A shape's ``<attribute>`` children are kept as the box's attributes.
    Only what cannot be read (a missing label or number, a broken mask) is refused.
    """
    warnings = [] if warnings is None else warnings
    root = read_xml(path)
    if root.tag != "annotations":
        raise InputError(f"{path}: root element is <{root.tag}>, expected <annotations> (CVAT for images 1.1)")
    if root.find("track") is not None:
        raise InputError(f"{path}: has <track> elements (CVAT for video); export the task as 'CVAT for images 1.1'")
    version = root.findtext("version")
    if version is not None and version.strip() != VERSION:
        raise InputError(f"{path}: CVAT format version {version.strip()!r}, expected {VERSION}")
    out = []
    for element in root.findall("image"):
        name = element.get("name")
        where = f"{path}: <image id=\"{element.get('id')}\" name=\"{name}\">"
        if not name:
            raise InputError(f"{where}: the image has no name")
        image = AnnotatedImage(name, where, _number(element, "width", where), _number(element, "height", where))
        for child in element:
            box = _shape(child, where, regions, warnings)
            if box is not None:
                image.boxes.append(box)
        out.append(image)
    return out


def _shape(child: ET.Element, where: str, regions: str, warnings: list[str]) -> Box | None:
    """The box a child of ``<image>`` stands for, or None (skipped, with a warning)."""
    tag, label = child.tag, child.get("label")
    shown = f"<{tag}> (label {label!r})"
    if tag not in ("box", "polygon", "mask", "ellipse"):  # polyline, points, skeleton, cuboid, tag: no region
        warnings.append(f"{where}: {shown} skipped: only boxes and regions (polygons, masks, ellipses) "
                        f"give a detector's boxes")
        return None
    if not label:
        raise InputError(f"{where}: a <{tag}> has no label")
    rotation = _number(child, "rotation", where) if child.get("rotation") else 0.0
    rotated = abs(rotation) > 1e-6
    if regions == "skip" and (tag != "box" or rotated):
        warnings.append(f"{where}: {shown} skipped{' (rotated box)' if tag == 'box' else ''} "
                        f"(--regions skip; enclosing_box imports its enclosing box)")
        return None
    attributes = {a.get("name"): (a.text or "") for a in child.findall("attribute") if a.get("name")} or None
    if tag == "box":
        x1, y1, x2, y2 = (_number(child, k, where) for k in ("xtl", "ytl", "xbr", "ybr"))
        if not rotated:
            return Box(label, x1, y1, x2 - x1, y2 - y1, attributes=attributes)
        hw, hh = (x2 - x1) / 2, (y2 - y1) / 2  # CVAT turns a box about its centre
        xs, ys = rotated_corners((x1 + x2) / 2, (y1 + y2) / 2, [-hw, hw, hw, -hw], [-hh, -hh, hh, hh], rotation)
    elif tag == "polygon":
        xs, ys = _points(child, where)
    elif tag == "ellipse":
        cx, cy, rx, ry = (_number(child, k, where) for k in ("cx", "cy", "rx", "ry"))
        if rotated:  # the box of a turned ellipse: half-widths sqrt((rx cos)^2 + (ry sin)^2) and likewise
            c, s = math.cos(math.radians(rotation)), math.sin(math.radians(rotation))
            ex, ey = math.hypot(rx * c, ry * s), math.hypot(rx * s, ry * c)
        else:
            ex, ey = rx, ry
        xs, ys = [cx - ex, cx + ex], [cy - ey, cy + ey]
    else:
        xs, ys = mask_extent(child, where)
        if not xs:
            warnings.append(f"{where}: {shown} skipped: the mask is empty")
            return None
    return enclosing_box(label, xs, ys, attributes)
