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
from .boxes import AnnotatedImage, Box

VERSION = "1.1"
# Shapes of CVAT for images other than boxes: the detector learns boxes only.
OTHER_SHAPES = ("polygon", "polyline", "points", "mask", "ellipse", "cuboid", "skeleton", "tag")


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


def parse_annotations(path: str | Path) -> list[AnnotatedImage]:
    """Images of a CVAT for images 1.1 export with their boxes (pixels)."""
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
            if child.tag in OTHER_SHAPES:
                raise InputError(f"{where}: <{child.tag}> (label {child.get('label')!r}) is not supported; "
                                 f"only <box> annotations are imported")
            if child.tag != "box":
                continue
            rotation = _number(child, "rotation", where) if child.get("rotation") else 0.0
            if abs(rotation) > 1e-6:
                raise InputError(f"{where}: a box with label {child.get('label')!r} is rotated by {rotation:g} "
                                 f"degrees; only axis-aligned boxes can be imported")
            label = child.get("label")
            if not label:
                raise InputError(f"{where}: a <box> has no label")
            x1, y1, x2, y2 = (_number(child, k, where) for k in ("xtl", "ytl", "xbr", "ybr"))
            image.boxes.append(Box(label, x1, y1, x2 - x1, y2 - y1))
        out.append(image)
    return out
