"""Read the annotators' export back, check it against the selection, and merge it into the labeled set.

Nothing is written unless the whole export passes: every selected image
annotated exactly once, no image outside the selection, known labels only,
boxes inside their image, the image sizes the export declares equal to the
files'. All problems are reported at once, each naming the export file, the
image and the problem.

Merging into a labeled COCO file first copies the file to ``<stem>.v<N><suffix>``
next to it (``labeled.v1.json`` before the first import, ``labeled.v2.json``
before the second, ...), then replaces it atomically: to undo an import, copy
the highest version back.
"""
from __future__ import annotations

import math
import re
import shutil
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

from ..data.coco import CocoData, validate_coco
from ..data.splits import merge_labels
from ..io import InputError, atomic_path, read_json, write_json
from . import cvat, label_studio
from .boxes import REGION_RULES, AnnotatedImage, Box, SelectedImage
from .export import read_selected_csv

FORMATS = ("label_studio", "cvat", "coco")
TOLERANCE_PX = 0.01  # tools store percentages and 2-decimal pixels: this much past an edge is rounding, not an error
SIZE_TOLERANCE_PX = 0.5
MAX_REPORTED = 25
def _listed(problems: list[str]) -> str:
    """The first MAX_REPORTED problems, one a line, and how many more there are."""
    more = f"\n  ... and {len(problems) - MAX_REPORTED} more" if len(problems) > MAX_REPORTED else ""
    return "\n  ".join(problems[:MAX_REPORTED]) + more


_UPLOAD_PREFIX = re.compile(r"^[0-9a-f]{8}-(.+)$")  # Label Studio renames uploaded files to "<8 hex>-<name>"


# ------------------------------------------------------------------------ reading an export
def detect_format(path: str | Path) -> str:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: export file not found")
    with open(path, "rb") as f:
        head = f.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    if path.suffix.lower() == ".xml" or head.startswith(b"<"):
        return "cvat"
    data = read_json(path)
    if isinstance(data, list):
        if data and isinstance(data[0], dict) and "data" not in data[0] and "image" in data[0]:
            raise InputError(f"{path}: looks like Label Studio's JSON-MIN export; export the project as 'JSON'")
        return "label_studio"
    if isinstance(data, dict) and "images" in data:
        return "coco"
    raise InputError(f"{path}: cannot tell the format (expected a Label Studio JSON export: a list of tasks, "
                     f"a COCO JSON object with 'images', or CVAT for images 1.1 XML); give --format")


def parse_coco(data, path: str) -> list[AnnotatedImage]:
    """Images of a COCO JSON with their boxes (pixels), labels by category name."""
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise InputError(f"{path}: a COCO JSON object needs an 'images' list")
    names = {}
    for c in data.get("categories", []):
        if not isinstance(c, dict) or "id" not in c or "name" not in c:
            raise InputError(f"{path}: category {c!r} needs an 'id' and a 'name'")
        names[c["id"]] = str(c["name"])
    images = {}
    for im in data["images"]:
        if not isinstance(im, dict) or not isinstance(im.get("file_name"), str) or "id" not in im:
            raise InputError(f"{path}: image entry {str(im)[:80]} needs an 'id' and a 'file_name'")
        where = f"{path}: image id {im['id']}"
        if im["id"] in images:
            raise InputError(f"{path}: duplicate image id {im['id']}")
        size = [im.get(k) for k in ("width", "height")]
        size = [float(v) if _is_number(v) else None for v in size]
        images[im["id"]] = AnnotatedImage(im["file_name"], where, size[0], size[1])
    for a in data.get("annotations", []):
        if not isinstance(a, dict):
            raise InputError(f"{path}: annotation {str(a)[:80]} is not an object")
        where = f"{path}: annotation id {a.get('id')}"
        if a.get("image_id") not in images:
            raise InputError(f"{where}: refers to unknown image id {a.get('image_id')!r}")
        where += f" (image {images[a['image_id']].ref})"
        if a.get("category_id") not in names:
            raise InputError(f"{where}: refers to unknown category id {a.get('category_id')!r} "
                             f"(the file's categories: {sorted(names)})")
        box = a.get("bbox")
        if not (isinstance(box, list) and len(box) == 4 and all(_is_number(v) for v in box)):
            raise InputError(f"{where}: 'bbox' must be four numbers [x, y, width, height], got {box!r}")
        images[a["image_id"]].boxes.append(Box(names[a["category_id"]], *(float(v) for v in box)))
    return list(images.values())


def read_export(path: str | Path, fmt: str = "auto", regions: str = "enclosing_box",
                several: str = "ground_truth_or_latest") -> list[AnnotatedImage]:
    """The annotated images of an export in any supported format (``auto``: detected).

    ``regions`` (:data:`~activedet.hitl.boxes.REGION_RULES`): polygons, masks, brushes, ellipses and
    rotated boxes become their enclosing boxes, or are skipped; ``several``
    (:data:`~activedet.hitl.label_studio.SEVERAL_RULES`): which of several Label Studio submissions
    on one task counts. What is skipped (shapes that are no region, such as polylines, points,
    skeletons, tags) or chosen is printed as a warning naming each.
    """
    if regions not in REGION_RULES:
        raise InputError(f"unknown region rule {regions!r} (known: {', '.join(REGION_RULES)})")
    if several not in label_studio.SEVERAL_RULES:
        raise InputError(f"unknown rule for several annotations {several!r} "
                         f"(known: {', '.join(label_studio.SEVERAL_RULES)})")
    if fmt == "auto":
        fmt = detect_format(path)
    warnings: list[str] = []
    if fmt == "cvat":
        images = cvat.parse_annotations(path, regions, warnings)
    elif fmt == "label_studio":
        images = label_studio.parse_export(read_json(path), str(path), regions, several, warnings)
    elif fmt == "coco":
        images = parse_coco(read_json(path), str(path))
    else:
        raise InputError(f"unknown export format {fmt!r} (known: auto, {', '.join(FORMATS)})")
    for w in warnings[:MAX_REPORTED]:
        print(f"warning: {w}")
    if len(warnings) > MAX_REPORTED:
        print(f"warning: {path}: {len(warnings) - MAX_REPORTED} more")
    return images


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


# ------------------------------------------------------------------------ matching and checking
def resolve_reference(ref: str, names: list[str]) -> str | None:
    """The selected image a tool's reference names, or None when it names none (or several).

    Accepts the relative path itself, a URL carrying it (``/data/local-files/?d=sub/a.png``,
    ``http://host/images/sub/a.png``), a path with extra leading folders, a path without the
    selection's folders (tools that flatten names) and Label Studio's renamed uploads.
    """
    found = reference_candidates(ref, names)
    return found[0] if len(found) == 1 else None


def reference_candidates(ref: str, names: list[str]) -> list[str]:
    """Every selected image ``ref`` may name: one (resolved), none, or several (ambiguous).

    The forms are those of :func:`resolve_reference`, from the most to the least exact: an exact
    or unique match of any form resolves; otherwise the candidates of the first form that matched
    several are returned (the export names the image ambiguously), else none.
    """
    parsed = urlparse(ref)
    forms = [ref] + parse_qs(parsed.query).get("d", []) + [unquote(parsed.path)]
    forms = [f.replace("\\", "/").lstrip("/") for f in forms if f]
    known = set(names)
    for form in forms:
        if form in known:
            return [form]
    ambiguous: list[str] = []
    for form in forms:
        hits = [n for n in names if form.endswith("/" + n) or n.endswith("/" + form)]
        if len(hits) == 1:
            return hits
        ambiguous = ambiguous or hits
    base = forms[-1].rsplit("/", 1)[-1] if forms else ""
    upload = _UPLOAD_PREFIX.match(base)
    if upload:
        hits = [n for n in names if n.rsplit("/", 1)[-1] == upload.group(1)]
        if len(hits) == 1:
            return hits
        ambiguous = ambiguous or hits
    return sorted(ambiguous)


def _to_pixels(box: Box, image: AnnotatedImage, width: float, height: float) -> Box:
    if not image.percent:
        return box
    return Box(box.label, box.x * width / 100.0, box.y * height / 100.0, box.w * width / 100.0,
               box.h * height / 100.0, attributes=box.attributes)


def _check_box(box: Box, width: float, height: float) -> tuple[Box | None, str | None]:
    """The box (rounded, snapped into the image within rounding tolerance), or a problem description."""
    shown = f"[{box.x:g}, {box.y:g}, {box.w:g}, {box.h:g}] ({box.label})"
    if box.w <= 0 or box.h <= 0:
        return None, f"box {shown} has zero or negative size"
    x1, y1, x2, y2 = box.x, box.y, box.x + box.w, box.y + box.h
    t = TOLERANCE_PX
    if x1 < -t or y1 < -t or x2 > width + t or y2 > height + t:
        return None, f"box {shown} lies outside the image of size {width:g}x{height:g}"
    x1, y1, x2, y2 = max(x1, 0.0), max(y1, 0.0), min(x2, width), min(y2, height)
    # 4 decimals: what check_partition compares; undoes the float noise of the percent round trip
    return Box(box.label, round(x1, 4), round(y1, 4), round(x2 - x1, 4), round(y2 - y1, 4),
               attributes=box.attributes), None


def labels_for_selection(annotated: list[AnnotatedImage], selection: list[SelectedImage], categories: list[dict],
                         export_path: str | Path, selected_path: str | Path) -> CocoData:
    """The selected images with the export's boxes as a COCO dataset (category ids by label name).

    Raises one InputError listing every problem found.
    """
    by_name = {s.image: s for s in selection}
    names = list(by_name)
    category_of = {c["name"]: c["id"] for c in categories}
    problems: list[str] = []
    seen: dict[str, str] = {}
    boxes: dict[int, list[Box]] = {}
    ambiguous: dict[str, list[str]] = {}  # selected image -> the export's places that may name it
    seconds: dict[int, float | None] = {}
    for image in annotated:
        found = reference_candidates(image.ref, names)
        if len(found) > 1:
            problems.append(f"{image.where}: image {image.ref!r} matches {len(found)} selected images "
                            f"({', '.join(found[:5])}{', ...' if len(found) > 5 else ''}), so it cannot tell "
                            f"which one it is: name each image by its path relative to the images folder, as "
                            f"in the 'image' column of {selected_path} (e.g. {found[0]!r})")
            for n in found:
                ambiguous.setdefault(n, []).append(image.where)
            continue
        if not found:
            problems.append(f"{image.where}: image {image.ref!r} is not one of the {len(names)} selected images "
                            f"of {selected_path}")
            continue
        name = found[0]
        if name in seen:
            problems.append(f"{image.where}: image {name} is annotated again (also at {seen[name]})")
            continue
        seen[name] = image.where
        sel = by_name[name]
        seconds[sel.image_id] = image.seconds
        for declared, actual, dim in ((image.width, sel.width, "width"), (image.height, sel.height, "height")):
            if declared is not None and abs(declared - actual) > SIZE_TOLERANCE_PX:
                problems.append(f"{image.where}: image {name}: wrong image size: the export says {dim} {declared:g}, "
                                f"the image is {sel.width}x{sel.height}")
        kept = []
        for raw in image.boxes:
            if raw.label not in category_of:
                problems.append(f"{image.where}: image {name}: unknown label {raw.label!r} "
                                f"(known: {', '.join(category_of)})")
                continue
            box, problem = _check_box(_to_pixels(raw, image, sel.width, sel.height), sel.width, sel.height)
            if problem:
                problems.append(f"{image.where}: image {name}: {problem}")
            else:
                kept.append(box)
        boxes[sel.image_id] = kept
    for s in selection:
        if s.image not in seen and s.image in ambiguous:
            problems.append(f"{export_path}: image {s.image} (rank {s.rank} of {selected_path}) is not matched: "
                            f"the export names it only ambiguously (at {ambiguous[s.image][0]})")
        elif s.image not in seen:
            problems.append(f"{export_path}: image {s.image} (rank {s.rank} of {selected_path}) is missing "
                            f"from the export (not annotated yet?)")
    if problems:
        raise InputError(f"{export_path}: {len(problems)} problem(s); nothing was imported:\n  " + _listed(problems))
    images, annotations = [], []
    for s in sorted(selection, key=lambda s: s.image_id):
        images.append({"id": s.image_id, "file_name": s.image, "width": s.width, "height": s.height})
        if seconds[s.image_id] is not None:  # measured by the tool (Label Studio's lead_time)
            images[-1]["annotation_seconds"] = seconds[s.image_id]
        for b in boxes[s.image_id]:
            ann = {"id": len(annotations) + 1, "image_id": s.image_id, "category_id": category_of[b.label],
                   "bbox": [b.x, b.y, b.w, b.h], "area": round(b.w * b.h, 4), "iscrowd": 0}
            if b.attributes:
                ann["attributes"] = b.attributes  # as CVAT's COCO export keeps them
            annotations.append(ann)
    # The batch's measured annotation time when the tool recorded it for every image (the report uses it
    # instead of the cost model); null otherwise (CVAT and COCO exports carry no per-image time).
    measured = [seconds[s.image_id] for s in selection]
    total = round(sum(measured), 3) if all(t is not None for t in measured) else None
    return CocoData(str(export_path), images, annotations, [dict(c) for c in categories],
                    {"description": f"labels imported from {export_path} for {selected_path}",
                     "annotation_seconds": total})


# ------------------------------------------------------------------------ merging
def next_backup_path(path: str | Path) -> Path:
    """``<stem>.v<N><suffix>`` next to ``path`` with N one above the highest existing version."""
    path = Path(path)
    pattern = re.compile(rf"^{re.escape(path.stem)}\.v(\d+){re.escape(path.suffix)}$")
    versions = [int(m.group(1)) for p in path.parent.iterdir() if (m := pattern.match(p.name))]
    return path.with_name(f"{path.stem}.v{max(versions, default=0) + 1}{path.suffix}")


def _check_not_labeled(labeled: CocoData, selection: list[SelectedImage], labeled_path) -> None:
    names = {Path(im["file_name"].replace("\\", "/")).as_posix(): im["id"] for im in labeled.images}
    ids = {im["id"]: im["file_name"] for im in labeled.images}
    problems = []
    for s in selection:
        if s.image in names:
            problems.append(f"image {s.image} is already labeled (was this selection imported before?)")
        elif s.image_id in ids:
            problems.append(f"image id {s.image_id} of {s.image} is taken by {ids[s.image_id]}: the labeled file "
                            f"changed since the selection was made; select again")
    if problems:
        raise InputError(f"{labeled_path}: {len(problems)} selected image(s) cannot be added; nothing was imported:\n  "
                         + _listed(problems))


def merge_into_labeled_file(labeled_path: str | Path, raw: dict, imported: CocoData) -> Path:
    """Append the imported images and boxes to the labeled file's own JSON (its other content untouched).

    Returns the backup of the previous version. The merged document is validated
    before anything is written.
    """
    labeled_path = Path(labeled_path)
    ann_ids = [a["id"] for a in raw["annotations"] if isinstance(a.get("id"), int)]
    next_id = max(ann_ids, default=0) + 1
    merged = dict(raw)
    merged["images"] = raw["images"] + imported.images
    merged["annotations"] = raw["annotations"] + [dict(a, id=next_id + k) for k, a in enumerate(imported.annotations)]
    validate_coco(merged, str(labeled_path))  # the merged file must load like any labeled set
    backup = next_backup_path(labeled_path)
    with atomic_path(backup) as tmp:
        shutil.copyfile(labeled_path, tmp)
    write_json(labeled_path, merged)
    return backup


def import_labels(export_path: str | Path, selected_path: str | Path, labeled_path: str | Path,
                  fmt: str = "auto", imported_out: str | Path | None = None, regions: str = "enclosing_box",
                  several: str = "ground_truth_or_latest") -> dict:
    """Validate an export against ``selected.csv`` and the labeled file, then merge it (or write it alone).

    With ``imported_out`` the imported labels (the selected images and their
    boxes, COCO JSON) go to that file and the labeled file is only read: the
    pipeline's ``merge_labels`` step merges them.
    """
    selection = read_selected_csv(selected_path)
    raw = read_json(labeled_path)
    labeled, _ = validate_coco(raw, str(labeled_path))
    _check_not_labeled(labeled, selection, labeled_path)
    imported = labels_for_selection(read_export(export_path, fmt, regions, several), selection, labeled.categories,
                                    export_path, selected_path)
    summary = {"images": len(imported.images), "boxes": len(imported.annotations),
               "annotation_seconds": imported.info.get("annotation_seconds")}
    if imported_out is not None:
        write_json(imported_out, imported.to_dict())
        return {**summary, "written": str(imported_out)}
    backup = merge_into_labeled_file(labeled_path, raw, imported)
    return {**summary, "written": str(labeled_path), "backup": str(backup),
            "labeled_images": len(labeled.images) + len(imported.images)}


def merge_imported(labeled: CocoData, selected_ids: list[int], pool: CocoData, imported: CocoData,
                   budget: int, source: str | None = None) -> CocoData:
    """The pipeline's human-mode merge: the labeled set plus the selected images with the imported labels.

    The invariants of :func:`~activedet.data.splits.merge_labels` hold (selection of
    exactly ``budget`` distinct unlabeled pool images, labeled set inside the pool,
    merged size): it runs with an oracle whose labels are the labeled set's own and
    the imported ones; only "the labels equal the pool's ground truth" is dropped.
    """
    got, want = sorted(imported.image_ids), sorted(set(selected_ids))
    if got != want:
        raise InputError(f"{imported.path}: labels for images {got[:10]} but this cycle selected {want[:10]}: "
                         f"they were imported for another selection; delete {imported.path} and run snakemake "
                         f"again to get the current annotation tasks")
    pool_images = {im["id"]: im for im in pool.images}
    for im in imported.images:
        p = pool_images.get(im["id"])
        if p is not None and (p["file_name"], float(p["width"]), float(p["height"])) != \
                (im["file_name"], float(im["width"]), float(im["height"])):
            raise InputError(f"{imported.path}: image id {im['id']} is {im['file_name']} "
                             f"{im['width']}x{im['height']} but the pool {pool.path} has {p['file_name']} "
                             f"{p['width']}x{p['height']}")
    known = {c["id"]: c["name"] for c in labeled.categories}
    for c in imported.categories:
        if known.get(c["id"]) != c["name"]:
            raise InputError(f"{imported.path}: category {c['id']} {c['name']!r} is not category {c['id']} of "
                             f"{labeled.path} ({known.get(c['id'])!r})")
    next_id = max((a["id"] for a in labeled.annotations), default=0) + 1
    new = [dict(a, id=next_id + k) for k, a in enumerate(imported.annotations)]
    oracle = CocoData(pool.path, pool.images, labeled.annotations + new, labeled.categories, pool.info)
    return merge_labels(labeled, list(selected_ids), oracle, budget, source=source)


__all__ = ["FORMATS", "detect_format", "import_labels", "labels_for_selection", "merge_imported",
           "merge_into_labeled_file", "next_backup_path", "read_export", "reference_candidates",
           "resolve_reference"]
