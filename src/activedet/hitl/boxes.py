"""The records shared by the exporters and importers: a box, a selected image, an annotated image."""
from __future__ import annotations

from dataclasses import dataclass, field

# Ten distinguishable colours (matplotlib's tab10), cycled over the classes: the Label Studio
# config and the contact sheet give a class the same colour.
# Pre-annotations below this detection score are left out of the Label Studio/CVAT files and the contact
# sheet: deleting dozens of low-score boxes per image costs an annotator more than drawing the few real ones.
DEFAULT_MIN_SCORE = 0.3
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
           "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")


@dataclass
class Box:
    """An axis-aligned box: top-left corner and size, in pixels or in percent of the image (``percent``)."""

    label: str
    x: float
    y: float
    w: float
    h: float
    score: float | None = None
    attributes: dict | None = None  # what annotators attached to the region (CVAT attributes, Label Studio choices)


@dataclass
class SelectedImage:
    """One row of ``selected.csv``: an image chosen for annotation."""

    rank: int  # 1 = most worth annotating (the strategy's order)
    image: str  # path relative to the images folder, POSIX separators
    image_id: int  # the id the image gets in the labeled COCO file
    width: int
    height: int
    score: float | None  # the strategy's score; None for strategies without one (random, coreset)


@dataclass
class AnnotatedImage:
    """An image as an annotators' export describes it."""

    ref: str  # how the export names the image (path, URL, file name)
    where: str  # its place in the export, for error messages ("task 3", "<image id=\"2\">")
    width: float | None  # the size the export declares, if any
    height: float | None
    boxes: list[Box] = field(default_factory=list)
    percent: bool = False  # boxes in percent of the image (Label Studio) rather than pixels
    seconds: float | None = None  # annotation time the tool measured (Label Studio's lead_time), if any


def clip_to_image(box: Box, width: float, height: float) -> Box | None:
    """The part of ``box`` (pixels) inside the image; None when nothing of it is."""
    x1, y1 = max(box.x, 0.0), max(box.y, 0.0)
    x2, y2 = min(box.x + box.w, float(width)), min(box.y + box.h, float(height))
    if x2 <= x1 or y2 <= y1:
        return None
    return Box(box.label, x1, y1, x2 - x1, y2 - y1, box.score, box.attributes)


# How the importers read regions that are not axis-aligned boxes (polygons, masks, brushes, ellipses, rotated
# boxes): their enclosing axis-aligned box (what a detector trained on boxes learns), or skipped with a warning.
REGION_RULES = ("enclosing_box", "skip")


def enclosing_box(label: str, xs, ys, attributes: dict | None = None) -> Box:
    """The smallest axis-aligned box holding the points ``xs``, ``ys`` (same units as them)."""
    x1, x2, y1, y2 = min(xs), max(xs), min(ys), max(ys)
    return Box(label, x1, y1, x2 - x1, y2 - y1, attributes=attributes)


def rotated_corners(cx: float, cy: float, dx: list[float], dy: list[float], degrees: float):
    """Points ``(cx, cy) + R(degrees) (dx, dy)`` with R turning clockwise on screen (y down), as both tools rotate."""
    import math

    t = math.radians(degrees)
    c, s = math.cos(t), math.sin(t)
    return [cx + a * c - b * s for a, b in zip(dx, dy)], [cy + a * s + b * c for a, b in zip(dx, dy)]
