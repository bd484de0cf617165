"""PASCAL VOC (XML annotations + ImageSets) read into the project's COCO structure.

``read_voc(root, ["VOC2007/trainval", "VOC2012/trainval"])`` gives one pool of the
16551 images of VOC07+12 trainval, ``read_voc(root, ["VOC2007/test"])`` the 4952
test images. ``root`` is the ``VOCdevkit`` folder; every ``file_name`` is relative
to it (``VOC2007/JPEGImages/000005.jpg``), so one images folder serves both years
and the result goes through :func:`activedet.data.coco.validate_coco` and the
pipeline unchanged.

Conventions:

* VOC boxes are 1-based inclusive pixel indices; the COCO box is the continuous
  ``[xmin - 1, ymin - 1, xmax - xmin + 1, ymax - ymin + 1]`` (torchvision and the
  devkit's ``+1`` width, so a box covering the whole image is the whole image);
* ``difficult`` objects are kept with ``difficult: 1``: training drops them
  (``engine.train.load_batch``) and the VOC metric ignores them (``evaluation.voc``).
  pycocotools knows no difficult flag, so COCO AP on VOC counts them like any object;
* image ids are 1..N in ImageSets order (VOC2012 has its own ``2007_000027`` names,
  so ids built from the names of both years would collide);
* the image file is ``<year>/JPEGImages/<filename>`` from the XML, else ``<id>.jpg``.

XML is parsed with the standard library's ElementTree (never resolves external
entities); files with a DTD or entity declarations are refused, as for CVAT exports.
This module does not import torch (the conversion is a light pipeline step).
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path, PurePosixPath
from typing import Sequence

from ..io import InputError, read_xml
from .coco import CocoData, validate_coco
from .images import image_size

# The 20 classes in the devkit's order; category ids are 1..20 in this order.
VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)
EPS = 1e-3  # the COCO reader's tolerance for boxes touching the image border


def parse_image_sets(spec: str | Sequence[str]) -> list[str]:
    """``"VOC2007/trainval,VOC2012/trainval"`` (or a list) -> ``["VOC2007/trainval", "VOC2012/trainval"]``."""
    entries = spec.split(",") if isinstance(spec, str) else list(spec)
    out = [e.strip().strip("/") for e in entries if e and e.strip()]
    for e in out:
        parts = PurePosixPath(e).parts
        if len(parts) != 2 or ".." in parts:
            raise InputError(f"VOC image set {e!r}: expected <year folder>/<set name>, e.g. VOC2007/trainval")
    if not out:
        raise InputError(f"VOC image sets {spec!r}: no entry (e.g. VOC2007/trainval,VOC2012/trainval)")
    return out


def image_set_file(root: str | Path, entry: str) -> Path:
    year, name = PurePosixPath(entry).parts
    return Path(root) / year / "ImageSets" / "Main" / f"{name}.txt"


def read_image_set(root: str | Path, entry: str) -> list[str]:
    """Image names of one ImageSets/Main list (first column of each non-empty line), duplicates refused."""
    path = image_set_file(root, entry)
    if not path.is_file():
        raise InputError(f"{path}: VOC image set file not found (dataset root {root}, entry {entry})")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 text ({e.reason})") from None
    names, seen = [], set()
    for i, line in enumerate(lines, 1):
        fields = line.split()
        if not fields:
            continue
        name = fields[0]
        if "/" in name or "\\" in name or name in (".", ".."):
            raise InputError(f"{path}: line {i}: image name {name!r} must be a plain file stem")
        if name in seen:
            raise InputError(f"{path}: line {i}: image {name!r} is listed twice")
        seen.add(name)
        names.append(name)
    return names


def count_images(root: str | Path, spec: str | Sequence[str]) -> int | None:
    """Number of images the image sets list, or None when a list file is not there (yet)."""
    entries = parse_image_sets(spec)
    if not all(image_set_file(root, e).is_file() for e in entries):
        return None
    return sum(len(read_image_set(root, e)) for e in entries)


def _read_xml(path: Path) -> ET.Element:
    return read_xml(path, "annotation file", "VOC annotations")


def _text(element: ET.Element, tag: str, path: Path, what: str) -> str:
    child = element.find(tag)
    if child is None or child.text is None or not child.text.strip():
        raise InputError(f"{path}: {what}: missing <{tag}>")
    return child.text.strip()


def _number(element: ET.Element, tag: str, path: Path, what: str) -> float:
    text = _text(element, tag, path, what)
    try:
        return float(text)
    except ValueError:
        raise InputError(f"{path}: {what}: <{tag}> is not a number: {text!r}") from None


def _image_size(root: ET.Element, path: Path, image_file: Path) -> tuple[float, float]:
    """(width, height) from <size>; a few VOC-format exports write 0 there, then the image header is read."""
    size = root.find("size")
    if size is not None and size.find("width") is not None and size.find("height") is not None:
        w, h = _number(size, "width", path, "<size>"), _number(size, "height", path, "<size>")
        if w > 0 and h > 0:
            return w, h
    if not image_file.is_file():
        raise InputError(f"{path}: no image size in <size> and image file {image_file} not found")
    return tuple(float(v) for v in image_size(image_file, f"{path}: no image size in <size>"))


def _file_name(root_el: ET.Element, year: str, name: str, path: Path) -> str:
    node = root_el.find("filename")
    stem = node.text.strip() if node is not None and node.text and node.text.strip() else f"{name}.jpg"
    if "/" in stem or "\\" in stem or stem in (".", ".."):
        raise InputError(f"{path}: <filename> {stem!r} must be a file name inside JPEGImages")
    return f"{year}/JPEGImages/{stem}"


def class_names(sources: Sequence[tuple[str | Path, str | Sequence[str]]]) -> list[str]:
    """The object class names used in the XML files of ``sources`` ((root, image sets) pairs).

    PASCAL's 20 classes in the devkit's order when every name is one of them (ids as in PASCAL VOC);
    otherwise the names found, sorted (LabelImg-style data with its own classes). Sorting makes the ids
    the same for the pool and the test split whatever order their files list the objects in.
    """
    found: set[str] = set()
    for root, spec in sources:
        root = Path(root)
        for entry in parse_image_sets(spec):
            year = PurePosixPath(entry).parts[0]
            for name in read_image_set(root, entry):
                path = root / year / "Annotations" / f"{name}.xml"
                for k, obj in enumerate(_read_xml(path).findall("object"), 1):
                    found.add(_text(obj, "name", path, f"object {k}"))
    if found <= set(VOC_CLASSES):
        return list(VOC_CLASSES)
    return sorted(found)


def read_voc(root: str | Path, image_sets: str | Sequence[str], on_box_outside: str = "clip",
             classes: Sequence[str] | None = VOC_CLASSES,
             class_sources: Sequence[tuple[str | Path, str | Sequence[str]]] | None = None) -> CocoData:
    """The images of ``image_sets`` (``"VOC2007/trainval,VOC2012/trainval"``) under the VOCdevkit ``root``.

    Every object must name one of ``classes`` (category ids 1..N in their order). ``classes=None``
    reads them from the XML files of ``class_sources`` ((root, image sets) pairs; default this
    ``root`` and ``image_sets``) with :func:`class_names` and prints them: give the pool's and the
    test split's sets so both get the same ids. A box reaching outside its image is clipped with a
    warning or refused (``on_box_outside``), as in the COCO reader; errors name the XML file.
    """
    root = Path(root)
    entries = parse_image_sets(image_sets)
    if classes is None:
        classes = class_names(class_sources or [(root, entries)])
        if classes != list(VOC_CLASSES):
            print(f"{root}: classes read from the VOC XML files (ids 1..{len(classes)} in this order): "
                  f"{', '.join(classes)}; set dataset.classes to choose the list and its order")
    if len(set(classes)) != len(classes) or not classes:
        raise InputError(f"dataset.classes {list(classes)!r}: the class names must be distinct and at least one")
    class_ids = {name: i + 1 for i, name in enumerate(classes)}
    images: list[dict] = []
    annotations: list[dict] = []
    warnings: list[str] = []
    seen_files: dict[str, Path] = {}
    for entry in entries:
        year = PurePosixPath(entry).parts[0]
        for name in read_image_set(root, entry):
            path = root / year / "Annotations" / f"{name}.xml"
            el = _read_xml(path)
            file_name = _file_name(el, year, name, path)
            if file_name in seen_files:
                raise InputError(f"{path}: image {file_name} is also listed by {seen_files[file_name]} "
                                 f"(image sets {', '.join(entries)} overlap)")
            seen_files[file_name] = path
            W, H = _image_size(el, path, root / file_name)
            image_id = len(images) + 1
            images.append({"id": image_id, "file_name": file_name, "width": W, "height": H})
            for k, obj in enumerate(el.findall("object"), 1):
                what = f"object {k}"
                cls = _text(obj, "name", path, what)
                if cls not in class_ids:
                    raise InputError(f"{path}: {what}: unknown class {cls!r} (known: {', '.join(classes)}); "
                                     f"list it in dataset.classes, or set dataset.classes: null to read the "
                                     f"classes from the XML files")
                box = obj.find("bndbox")
                if box is None:
                    raise InputError(f"{path}: {what} ({cls}): missing <bndbox>")
                xmin, ymin, xmax, ymax = (_number(box, t, path, f"{what} ({cls})")
                                          for t in ("xmin", "ymin", "xmax", "ymax"))
                x1, y1, x2, y2 = xmin - 1, ymin - 1, xmax, ymax
                where = f"{path}: {what} ({cls}): box xmin={xmin:g} ymin={ymin:g} xmax={xmax:g} ymax={ymax:g}"
                if x2 <= x1 or y2 <= y1:
                    raise InputError(f"{where} has zero or negative size")
                if x1 < -EPS or y1 < -EPS or x2 > W + EPS or y2 > H + EPS:
                    if on_box_outside == "error":
                        raise InputError(f"{where} lies outside the image of size {W:g}x{H:g} "
                                         f"(set dataset.on_box_outside: clip to clip such boxes)")
                    cx1, cy1, cx2, cy2 = max(x1, 0.0), max(y1, 0.0), min(x2, W), min(y2, H)
                    if cx2 <= cx1 or cy2 <= cy1:
                        raise InputError(f"{where} lies entirely outside the image of size {W:g}x{H:g}")
                    warnings.append(f"{where} clipped to the image of size {W:g}x{H:g}")
                    x1, y1, x2, y2 = cx1, cy1, cx2, cy2
                difficult = obj.find("difficult")
                flag = int(difficult is not None and (difficult.text or "0").strip() not in ("", "0"))
                annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": class_ids[cls],
                                    "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1),
                                    "iscrowd": 0, "difficult": flag})
    for w in warnings[:20]:
        print(f"warning: {w}")
    if len(warnings) > 20:
        print(f"warning: {root}: {len(warnings) - 20} more boxes clipped")
    source = f"{root} ({', '.join(entries)})"
    if not images:
        raise InputError(f"{source}: the image sets list no images")
    data = {"info": {"description": f"PASCAL VOC {', '.join(entries)}", "voc_root": str(root)},
            "images": images, "annotations": annotations,
            "categories": [{"id": i, "name": n} for n, i in class_ids.items()]}
    coco, _ = validate_coco(data, source, "error")  # already in range: a failure here is a bug
    return coco


def summary(coco: CocoData) -> dict:
    difficult = sum(1 for a in coco.annotations if a.get("difficult"))
    empty = len(set(coco.image_ids) - {a["image_id"] for a in coco.annotations})
    return {"images": len(coco.images), "objects": len(coco.annotations), "difficult": difficult,
            "images_without_objects": empty}
