"""Digit scenes: the embedded default object-detection dataset.

Scenes are built from the *real* handwritten digits shipped with scikit-learn
(``sklearn.datasets.load_digits``: 1797 images, 8x8, values 0..16, ten
classes).  Each scene is a small RGB image holding zero to a few digits, each
a detection object with a tight box around its ink, on top of clutter that is
not an object.  The data is built so that *which* images are labelled matters,
as it does with real detection data:

* **Long-tailed classes.**  Class ``k`` (in a fixed order drawn from
  ``class_order_seed``) has probability ``p ∝ exp(-rank * log(imbalance) / 9)``,
  so the most frequent class is ``imbalance`` times as frequent as the rarest
  (see :func:`class_frequencies`).  Pool and test share the distribution.
* **Variable object counts.**  An image is empty with probability
  ``p_empty``; otherwise it asks for ``n`` objects, ``1 <= n <= max_objects``,
  with ``P(n) ∝ object_decay ** (n - 1)`` (a truncated geometric law: few
  objects are common, many are rare).  Objects that find no place (see
  below) are dropped.
* **Scale variation.**  Each digit's 8x8 cell is rendered with side ``s``
  drawn uniformly in ``[min_size, max_size]`` pixels (the ink is usually a
  little smaller than the cell), width jittered by up to ``±aspect_jitter``,
  upscaled with PIL's bilinear filter.
* **Tight boxes.**  The box is the tight box of the rendered pixels whose ink
  is at least ``ink_threshold`` (of the digit's peak), recomputed after
  scaling, in pixel-edge coordinates ``[x, y, w, h]``; it always lies inside
  the image.  A placement whose IoU with a box already placed exceeds
  ``max_overlap``, or whose intersection with one exceeds ``max_object_cover``
  of the smaller box's area (a small digit inside a big one's box), is
  retried up to ``placement_tries`` times, then the object is dropped.
* **Clutter that is not an object.**  ``Poisson(distractor_mean)``
  distractors per image: straight or bent strokes, soft blobs, and fragments
  of real digits (a quarter to a half of the 8x8 cell, rendered like a digit,
  holding at most ``fragment_max_ink`` of the digit's ink; never from a "1",
  whose every piece still looks like a "1") — none has a box.
  A distractor may cover at most ``distractor_max_cover`` of any object's box.
* **Contrast, colour and noise.**  Per image: contrast (difference of
  foreground and background grey levels) uniform in ``contrast_range``, the
  background level uniform in what is left, polarity inverted (dark ink on a
  light ground) with probability ``p_invert``, per-channel colour tints of up
  to ``±tint`` for ground and ink, a linear background gradient of up to
  ``gradient`` amplitude, per-object ink strength in
  ``object_intensity_range``, a Gaussian blur (sigma in ``blur_sigma_range``)
  with probability ``p_blur``, and Gaussian pixel noise whose sigma is drawn
  uniformly in ``noise_range`` (in [0, 1] units) but capped at
  ``noise_contrast_cap`` times the image's contrast, so that no image is
  both faint and very noisy.

Pool and test use disjoint source digits: the 1797 sklearn digits are split,
class by class, into a test source set (``test_source_fraction`` of each
class) and a pool source set, so the test measures generalisation to new
handwriting.  Each split's COCO ``info`` lists its ``source_indices`` and each
annotation carries the sklearn index of its digit in ``source_index``.

Everything is drawn from ``numpy.random.default_rng`` seeded with
``[seed, split, image_index]``: the same seed gives byte-identical PNGs and
JSON, and image ``i`` of a split does not depend on the split's size (the
first 100 images of a 2000-image pool are the 100 images of a 100-image pool).

Layout written by :func:`generate`::

    out_dir/pool.json          COCO; file_name relative to pool/images/
    out_dir/pool/images/000001.png ...
    out_dir/test.json
    out_dir/test/images/000001.png ...

Category ids are ``digit + 1`` (1..10), named ``"0"`` .. ``"9"``.
"""
from __future__ import annotations

import math
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from activedet.io import atomic_path, write_json

__all__ = ["DEFAULTS", "GENERATOR_VERSION", "class_frequencies", "generate", "load_source_digits"]

GENERATOR_VERSION = 1
N_CLASSES = 10

def _schema_defaults() -> dict[str, Any]:
    """The defaults of params ``dataset.digit_scenes`` (their one source), pairs as tuples."""
    from ..params import load_schema

    section = load_schema()["properties"]["dataset"]["properties"]["digit_scenes"]["properties"]
    return {k: tuple(v["default"]) if isinstance(v["default"], list) else v["default"] for k, v in section.items()}


_SCHEMA = _schema_defaults()
# The generator's knobs: those params.yaml exposes (dataset.digit_scenes) with the schema's defaults, the rest here.
DEFAULTS: dict[str, Any] = {
    # sizes of the splits and images
    "n_pool": _SCHEMA["n_pool"],
    "n_test": _SCHEMA["n_test"],
    "image_size": _SCHEMA["image_size"],
    # classes
    "imbalance": _SCHEMA["imbalance"],
    "class_order_seed": 0,
    "test_source_fraction": 0.3,
    # objects per image
    "p_empty": _SCHEMA["p_empty"],
    "max_objects": _SCHEMA["max_objects"],
    "object_decay": 0.6,
    # rendering of the objects
    "min_size": _SCHEMA["min_size"],
    "max_size": _SCHEMA["max_size"],
    "aspect_jitter": 0.1,
    "ink_threshold": 0.25,
    "max_overlap": _SCHEMA["max_overlap"],
    "max_object_cover": 0.3,
    "placement_tries": 20,
    "object_intensity_range": (0.8, 1.0),
    # clutter
    "distractor_mean": _SCHEMA["distractor_mean"],
    "max_distractors": 8,
    "distractor_weights": (0.4, 0.2, 0.4),  # stroke, blob, fragment
    "distractor_max_cover": 0.05,
    "fragment_max_ink": 0.5,
    # appearance
    "contrast_range": _SCHEMA["contrast_range"],
    "p_invert": 0.3,
    "tint": 0.15,
    "gradient": 0.15,
    "noise_range": _SCHEMA["noise_range"],
    "noise_contrast_cap": 0.2,
    "p_blur": 0.3,
    "blur_sigma_range": (0.3, 0.8),
}

_SPLIT_CODES = {"pool": 1, "test": 2}
_RANGE_PARAMS = ("contrast_range", "noise_range", "object_intensity_range", "blur_sigma_range")
# fragment crops of the 8x8 cell: 16 to 32 cells, i.e. a quarter to a half
_FRAGMENT_SHAPES = ((4, 4), (4, 5), (5, 4), (4, 6), (6, 4), (5, 5), (5, 6), (6, 5), (4, 8), (8, 4))


# ---------------------------------------------------------------- classes
def class_frequencies(imbalance: float, n_classes: int = 10, seed: int = 0) -> np.ndarray:
    """Long-tailed class probabilities, indexed by class (digit).

    The classes are put in an order drawn from ``seed``; the class at rank
    ``r`` (0 = most frequent) gets ``p ∝ exp(-r * log(imbalance) / (n_classes - 1))``,
    so ``max(p) / min(p) == imbalance``.  ``imbalance == 1`` is uniform.
    """
    imbalance = float(imbalance)
    if not math.isfinite(imbalance) or imbalance < 1.0:
        raise ValueError(f"imbalance must be a finite number >= 1, got {imbalance!r}")
    if int(n_classes) != n_classes or n_classes < 1:
        raise ValueError(f"n_classes must be a positive integer, got {n_classes!r}")
    n_classes = int(n_classes)
    order = np.random.default_rng([int(seed), 7]).permutation(n_classes)  # order[r] = class at rank r
    ranks = np.empty(n_classes, dtype=np.int64)
    ranks[order] = np.arange(n_classes)
    decay = math.log(imbalance) / max(n_classes - 1, 1)
    p = np.exp(-ranks * decay)
    return p / p.sum()


# ---------------------------------------------------------------- parameters
def _check(cond: bool, name: str, msg: str, value: Any) -> None:
    if not cond:
        raise ValueError(f"{name} {msg}, got {value!r}")


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and math.isfinite(float(v))


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _validate(p: dict[str, Any]) -> dict[str, Any]:
    """Check every parameter; return a JSON-friendly normalised copy."""
    for name in p:
        if name not in DEFAULTS:
            raise ValueError(f"unknown parameter {name!r}; known: {', '.join(sorted(DEFAULTS))}")
    for name in ("n_pool", "n_test", "image_size", "max_objects", "min_size", "max_size",
                 "placement_tries", "max_distractors", "class_order_seed"):
        _check(_is_int(p[name]), name, "must be an integer", p[name])
        p[name] = int(p[name])
    for name in ("imbalance", "test_source_fraction", "p_empty", "object_decay", "aspect_jitter",
                 "ink_threshold", "max_overlap", "max_object_cover", "distractor_mean", "distractor_max_cover",
                 "fragment_max_ink", "p_invert", "tint", "gradient", "p_blur", "noise_contrast_cap"):
        _check(_is_num(p[name]), name, "must be a finite number", p[name])
        p[name] = float(p[name])
    for name in _RANGE_PARAMS:
        v = p[name]
        ok = isinstance(v, (tuple, list)) and len(v) == 2 and all(_is_num(x) for x in v) and v[0] <= v[1]
        _check(ok, name, "must be a pair (low, high) of numbers with low <= high", v)
        p[name] = [float(v[0]), float(v[1])]
    w = p["distractor_weights"]
    ok = (isinstance(w, (tuple, list)) and len(w) == 3 and all(_is_num(x) and x >= 0 for x in w)
          and sum(float(x) for x in w) > 0)
    _check(ok, "distractor_weights", "must be three non-negative weights (stroke, blob, fragment) with a positive sum", w)
    p["distractor_weights"] = [float(x) for x in w]

    _check(p["n_pool"] >= 0, "n_pool", "must be >= 0", p["n_pool"])
    _check(p["n_test"] >= 0, "n_test", "must be >= 0", p["n_test"])
    _check(16 <= p["image_size"] <= 4096, "image_size", "must be in [16, 4096]", p["image_size"])
    _check(p["min_size"] >= 6, "min_size", "must be >= 6", p["min_size"])
    _check(p["min_size"] <= p["max_size"], "min_size", f"must be <= max_size ({p['max_size']})", p["min_size"])
    _check(p["max_size"] <= p["image_size"], "max_size", f"must be <= image_size ({p['image_size']})", p["max_size"])
    _check(p["imbalance"] >= 1.0, "imbalance", "must be >= 1", p["imbalance"])
    _check(0.05 <= p["test_source_fraction"] <= 0.95, "test_source_fraction", "must be in [0.05, 0.95]",
           p["test_source_fraction"])
    _check(0.0 <= p["p_empty"] <= 1.0, "p_empty", "must be in [0, 1]", p["p_empty"])
    _check(p["max_objects"] >= 1, "max_objects", "must be >= 1", p["max_objects"])
    _check(0.0 < p["object_decay"] <= 1.0, "object_decay", "must be in (0, 1]", p["object_decay"])
    _check(0.0 <= p["aspect_jitter"] <= 0.5, "aspect_jitter", "must be in [0, 0.5]", p["aspect_jitter"])
    _check(0.01 <= p["ink_threshold"] <= 0.9, "ink_threshold", "must be in [0.01, 0.9]", p["ink_threshold"])
    _check(0.0 <= p["max_overlap"] <= 1.0, "max_overlap", "must be in [0, 1]", p["max_overlap"])
    _check(0.0 <= p["max_object_cover"] <= 1.0, "max_object_cover", "must be in [0, 1]", p["max_object_cover"])
    _check(p["placement_tries"] >= 1, "placement_tries", "must be >= 1", p["placement_tries"])
    _check(0.0 <= p["distractor_mean"] <= 50.0, "distractor_mean", "must be in [0, 50]", p["distractor_mean"])
    _check(p["max_distractors"] >= 0, "max_distractors", "must be >= 0", p["max_distractors"])
    _check(0.0 <= p["distractor_max_cover"] <= 1.0, "distractor_max_cover", "must be in [0, 1]",
           p["distractor_max_cover"])
    _check(0.1 <= p["fragment_max_ink"] <= 1.0, "fragment_max_ink", "must be in [0.1, 1]", p["fragment_max_ink"])
    lo, hi = p["contrast_range"]
    _check(0.05 <= lo and hi <= 1.0, "contrast_range", "must lie in [0.05, 1]", p["contrast_range"])
    lo, hi = p["noise_range"]
    _check(0.0 <= lo and hi <= 0.5, "noise_range", "must lie in [0, 0.5]", p["noise_range"])
    lo, hi = p["object_intensity_range"]
    _check(0.1 <= lo and hi <= 1.0, "object_intensity_range", "must lie in [0.1, 1]", p["object_intensity_range"])
    lo, hi = p["blur_sigma_range"]
    _check(0.0 <= lo and hi <= 5.0, "blur_sigma_range", "must lie in [0, 5]", p["blur_sigma_range"])
    for name in ("p_invert", "p_blur"):
        _check(0.0 <= p[name] <= 1.0, name, "must be in [0, 1]", p[name])
    _check(0.0 <= p["tint"] <= 0.5, "tint", "must be in [0, 0.5]", p["tint"])
    _check(0.0 <= p["gradient"] <= 0.5, "gradient", "must be in [0, 0.5]", p["gradient"])
    _check(0.05 <= p["noise_contrast_cap"] <= 10.0, "noise_contrast_cap", "must be in [0.05, 10]",
           p["noise_contrast_cap"])
    return p


# ---------------------------------------------------------------- sources
def load_source_digits() -> tuple[np.ndarray, np.ndarray]:
    """The sklearn digits as ``(images float32 (1797, 8, 8) in [0, 1], labels int64)``.

    Each digit is divided by its own peak so that its darkest ink is 1.
    """
    from sklearn.datasets import load_digits  # local import: sklearn is slow to import

    d = load_digits()
    imgs = np.asarray(d.images, dtype=np.float32)
    peak = imgs.reshape(len(imgs), -1).max(axis=1)
    imgs = imgs / np.maximum(peak, 1.0)[:, None, None]
    return imgs, np.asarray(d.target, dtype=np.int64)


def _split_sources(labels: np.ndarray, seed: int, test_fraction: float) -> dict[str, np.ndarray]:
    """Disjoint, class-stratified sklearn index sets for pool and test."""
    rng = np.random.default_rng([int(seed), 0])
    pool, test = [], []
    for k in range(N_CLASSES):
        idx = np.flatnonzero(labels == k)
        idx = idx[rng.permutation(len(idx))]
        n_test = int(round(test_fraction * len(idx)))
        n_test = min(max(n_test, 1), len(idx) - 1)
        test.append(idx[:n_test])
        pool.append(idx[n_test:])
    return {"pool": np.sort(np.concatenate(pool)), "test": np.sort(np.concatenate(test))}


# ---------------------------------------------------------------- rendering
def _resize(cells: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Bilinear upscale of a cell array to ``out_h x out_w`` pixels (one zero
    cell of padding on each side fades the ink out); trimmed to its support."""
    h, w = cells.shape
    padded = np.zeros((h + 2, w + 2), dtype=np.float32)
    padded[1:-1, 1:-1] = cells
    fy, fx = out_h / h, out_w / w
    size = (max(1, int(round((w + 2) * fx))), max(1, int(round((h + 2) * fy))))
    arr = np.asarray(Image.fromarray(padded).resize(size, Image.BILINEAR), dtype=np.float32)
    arr = np.clip(arr, 0.0, 1.0)
    rows = np.flatnonzero(arr.max(axis=1) > 0.01)
    cols = np.flatnonzero(arr.max(axis=0) > 0.01)
    if len(rows) == 0:
        return np.zeros((0, 0), dtype=np.float32)
    return arr[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]


def _ink_box(alpha: np.ndarray, thr: float) -> tuple[int, int, int, int] | None:
    """Tight box ``(x0, y0, x1, y1)`` (inclusive) of pixels with ``alpha >= thr``."""
    mask = alpha >= thr
    rows = np.flatnonzero(mask.any(axis=1))
    if len(rows) == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1])


def _paste_max(layer: np.ndarray, patch: np.ndarray, y: int, x: int) -> None:
    """``layer = max(layer, patch placed at (y, x))``, clipped to the layer."""
    H, W = layer.shape
    ph, pw = patch.shape
    y0, x0 = max(y, 0), max(x, 0)
    y1, x1 = min(y + ph, H), min(x + pw, W)
    if y1 <= y0 or x1 <= x0:
        return
    sub = layer[y0:y1, x0:x1]
    np.maximum(sub, patch[y0 - y:y1 - y, x0 - x:x1 - x], out=sub)


def _overlaps(box: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """IoU, and intersection over the smaller box's area, of one
    ``[x0, y0, x1, y1)`` box (exclusive ends) against many."""
    ix = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    iy = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = ix * iy
    a = (box[2] - box[0]) * (box[3] - box[1])
    b = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(a + b - inter, 1e-9), inter / np.maximum(np.minimum(a, b), 1e-9)


def _gauss_kernel(sigma: float) -> np.ndarray:
    r = max(1, int(math.ceil(3 * sigma)))
    x = np.arange(-r, r + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / max(sigma, 1e-6)) ** 2)
    return k / k.sum()


def _blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of an ``(H, W, C)`` array, edges replicated."""
    k = _gauss_kernel(sigma)
    r = len(k) // 2
    H, W = img.shape[:2]
    p = np.pad(img, ((r, r), (0, 0), (0, 0)), mode="edge")
    out = sum(k[i] * p[i:i + H] for i in range(len(k)))
    p = np.pad(out, ((0, 0), (r, r), (0, 0)), mode="edge")
    return sum(k[i] * p[:, i:i + W] for i in range(len(k)))


class _SceneMaker:
    """Renders one split's images; all randomness comes from the per-image rng."""

    def __init__(self, p: dict[str, Any], digits: np.ndarray, labels: np.ndarray,
                 sources: np.ndarray, probs: np.ndarray, fragment_exclude: tuple[int, ...] = (1,)):
        # ``digits`` may hold any 8x8 glyph cells (the pre-training scenes pass letters); class k of
        # ``labels`` is drawn with probability ``probs[k]``.
        self.p = p
        self.n_classes = len(probs)
        self.S = p["image_size"]
        self.digits = digits
        self.sources = sources
        self.by_class = [sources[labels[sources] == k] for k in range(self.n_classes)]
        # any piece of a "1" still looks like a "1": fragments come from the other classes
        self.fragment_sources = sources[~np.isin(labels[sources], fragment_exclude)]
        self.probs = probs
        n = np.arange(1, p["max_objects"] + 1)
        w = p["object_decay"] ** (n - 1).astype(np.float64)
        self.count_probs = w / w.sum()
        self.yy, self.xx = np.mgrid[0:self.S, 0:self.S].astype(np.float32)
        dw = np.asarray(p["distractor_weights"], dtype=np.float64)
        self.distractor_probs = dw / dw.sum()
        self.digit_ink = digits.reshape(len(digits), -1).sum(axis=1)

    # -- objects
    def _cell_size(self, rng: np.random.Generator) -> tuple[int, int]:
        p = self.p
        s = rng.uniform(p["min_size"], p["max_size"])
        a = 1.0 + rng.uniform(-p["aspect_jitter"], p["aspect_jitter"])
        h = int(round(s))
        w = int(round(min(s * a, self.S)))
        return max(h, 4), max(w, 4)

    def _place_objects(self, rng: np.random.Generator, layer: np.ndarray) -> tuple[list, int]:
        p, S = self.p, self.S
        if rng.random() < p["p_empty"]:
            n_want = 0
        else:
            n_want = int(rng.choice(len(self.count_probs), p=self.count_probs)) + 1
        objects: list[tuple[int, int, list[float]]] = []  # (class, sklearn index, [x0, y0, x1, y1))
        dropped = 0
        for _ in range(n_want):
            k = int(rng.choice(self.n_classes, p=self.probs))
            src = int(rng.choice(self.by_class[k]))
            h, w = self._cell_size(rng)
            patch = _resize(self.digits[src], h, w)
            box = _ink_box(patch, p["ink_threshold"]) if patch.size else None
            if box is None:
                dropped += 1
                continue
            bx0, by0, bx1, by1 = box
            bw, bh = bx1 - bx0 + 1, by1 - by0 + 1
            if bw > S or bh > S:
                dropped += 1
                continue
            placed = False
            existing = np.asarray([o[2] for o in objects], dtype=np.float64).reshape(-1, 4)
            for _ in range(p["placement_tries"]):
                X = int(rng.integers(0, S - bw + 1))  # ink box left edge in the image
                Y = int(rng.integers(0, S - bh + 1))
                cand = np.array([X, Y, X + bw, Y + bh], dtype=np.float64)
                if len(existing):
                    iou, cover = _overlaps(cand, existing)
                    if iou.max() > p["max_overlap"] or cover.max() > p["max_object_cover"]:
                        continue
                strength = rng.uniform(*p["object_intensity_range"])
                _paste_max(layer, patch * np.float32(strength), Y - by0, X - bx0)
                objects.append((k, src, cand.tolist()))
                placed = True
                break
            if not placed:
                dropped += 1
        return objects, dropped

    # -- distractors
    def _stroke(self, rng: np.random.Generator) -> np.ndarray:
        S = self.S
        n_seg = 1 if rng.random() < 0.5 else 2
        pts = [rng.uniform(0, S, size=2)]
        for _ in range(n_seg):
            length = rng.uniform(0.25, 0.6) * S
            ang = rng.uniform(0, 2 * np.pi)
            pts.append(pts[-1] + length * np.array([np.cos(ang), np.sin(ang)]))
        half = rng.uniform(0.5, 1.5) * S / 64.0 + 0.2
        d = np.full((S, S), np.inf, dtype=np.float32)
        for a, b in zip(pts[:-1], pts[1:]):
            ab = b - a
            t = ((self.xx - a[0]) * ab[0] + (self.yy - a[1]) * ab[1]) / max(float(ab @ ab), 1e-6)
            t = np.clip(t, 0.0, 1.0)
            dist = np.hypot(self.xx - (a[0] + t * ab[0]), self.yy - (a[1] + t * ab[1]))
            np.minimum(d, dist, out=d)
        return np.clip(half + 0.5 - d, 0.0, 1.0)

    def _blob(self, rng: np.random.Generator) -> np.ndarray:
        S = self.S
        cx, cy = rng.uniform(0, S, size=2)
        sx = rng.uniform(1.5, 4.0) * S / 64.0
        sy = sx * np.exp(rng.uniform(-0.4, 0.4))  # at most 1.5:1, so a blob never looks like a "1"
        g = np.exp(-0.5 * (((self.xx - cx) / sx) ** 2 + ((self.yy - cy) / sy) ** 2))
        return np.clip(1.6 * g, 0.0, 1.0)

    def _fragment(self, rng: np.random.Generator) -> np.ndarray | None:
        p, S = self.p, self.S
        for _ in range(5):
            src = int(rng.choice(self.fragment_sources))
            ch, cw = _FRAGMENT_SHAPES[int(rng.integers(len(_FRAGMENT_SHAPES)))]
            r0 = int(rng.integers(0, 8 - ch + 1))
            c0 = int(rng.integers(0, 8 - cw + 1))
            cells = self.digits[src, r0:r0 + ch, c0:c0 + cw]
            ink = float(cells.sum())
            if ink < 0.15 * self.digit_ink[src] or ink > p["fragment_max_ink"] * self.digit_ink[src]:
                continue
            h, w = self._cell_size(rng)  # size of a whole 8x8 cell at this scale
            patch = _resize(cells, max(2, int(round(h * ch / 8))), max(2, int(round(w * cw / 8))))
            if patch.size == 0:
                continue
            layer = np.zeros((S, S), dtype=np.float32)
            ph, pw = patch.shape
            _paste_max(layer, patch, int(rng.integers(-ph // 3, S - 2 * ph // 3 + 1)),
                       int(rng.integers(-pw // 3, S - 2 * pw // 3 + 1)))
            return layer
        return None

    def _add_distractors(self, rng: np.random.Generator, layer: np.ndarray, boxes: np.ndarray) -> int:
        p = self.p
        n = min(int(rng.poisson(p["distractor_mean"])), p["max_distractors"])
        areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        added = 0
        for _ in range(n):
            kind = int(rng.choice(3, p=self.distractor_probs))
            for _ in range(5):
                d = (self._stroke, self._blob, self._fragment)[kind](rng)
                if d is None:
                    break
                mask = d >= p["ink_threshold"]
                if not mask.any():
                    continue
                if len(boxes):
                    # ink of the distractor inside each object's box, relative to the box area
                    cover = np.array([mask[int(b[1]):int(b[3]), int(b[0]):int(b[2])].sum() for b in boxes])
                    if (cover > p["distractor_max_cover"] * areas).any():
                        continue
                np.maximum(layer, d * np.float32(rng.uniform(0.6, 1.0)), out=layer)
                added += 1
                break
        return added

    # -- a whole scene
    def make(self, rng: np.random.Generator) -> tuple[np.ndarray, list, dict]:
        p, S = self.p, self.S
        obj_layer = np.zeros((S, S), dtype=np.float32)
        objects, dropped = self._place_objects(rng, obj_layer)
        boxes = np.asarray([o[2] for o in objects], dtype=np.float64).reshape(-1, 4)
        clutter = np.zeros((S, S), dtype=np.float32)
        n_distr = self._add_distractors(rng, clutter, boxes)
        alpha = np.maximum(obj_layer, clutter)

        # appearance
        c = rng.uniform(*p["contrast_range"])
        bg = rng.uniform(0.0, 1.0 - c)
        fg = bg + c
        if rng.random() < p["p_invert"]:
            bg, fg = fg, bg
        bg_col = bg + rng.uniform(-p["tint"], p["tint"], size=3)
        fg_col = fg + rng.uniform(-p["tint"], p["tint"], size=3)
        g_amp = rng.uniform(0.0, p["gradient"])
        g_ang = rng.uniform(0.0, 2 * np.pi)
        ramp = ((self.xx - S / 2) * np.cos(g_ang) + (self.yy - S / 2) * np.sin(g_ang)) / S  # in [-0.71, 0.71]
        ground = bg_col[None, None, :] + (g_amp * ramp)[:, :, None]
        a = alpha[:, :, None]
        img = ground * (1.0 - a) + fg_col[None, None, :] * a
        if rng.random() < p["p_blur"]:
            img = _blur(img, rng.uniform(*p["blur_sigma_range"]))
        sigma = min(rng.uniform(*p["noise_range"]), p["noise_contrast_cap"] * c)
        if sigma > 0:
            img = img + rng.normal(0.0, sigma, size=img.shape)
        img = np.clip(np.rint(np.clip(img, 0.0, 1.0) * 255.0), 0, 255).astype(np.uint8)
        stats = {"dropped": dropped, "distractors": n_distr, "contrast": c, "noise": sigma}
        return img, objects, stats


# ---------------------------------------------------------------- writing
_IMAGE_NAME = re.compile(r"^\d{6,}\.png$")


def _write_png(path: Path, img: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        Image.fromarray(img).save(tmp, format="PNG", compress_level=6)


def _generate_split(out_dir: Path, split: str, n: int, seed: int, p: dict[str, Any], digits: np.ndarray,
                    labels: np.ndarray, sources: np.ndarray, probs: np.ndarray,
                    class_order: list[int]) -> dict[str, Any]:
    maker = _SceneMaker(p, digits, labels, sources, probs)
    img_dir = out_dir / split / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    S = p["image_size"]
    images, annotations = [], []
    counts = np.zeros(N_CLASSES, dtype=np.int64)
    empty = dropped = distractors = 0
    names = set()
    for i in range(n):
        rng = np.random.default_rng([int(seed), _SPLIT_CODES[split], i])
        img, objects, stats = maker.make(rng)
        image_id = i + 1
        name = f"{image_id:06d}.png"
        names.add(name)
        _write_png(img_dir / name, img)
        images.append({"id": image_id, "file_name": name, "width": S, "height": S})
        for k, src, (x0, y0, x1, y1) in objects:
            w, h = float(x1 - x0), float(y1 - y0)
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": k + 1,
                "bbox": [float(x0), float(y0), w, h], "area": w * h, "iscrowd": 0,
                "source_index": src,
            })
            counts[k] += 1
        empty += not objects
        dropped += stats["dropped"]
        distractors += stats["distractors"]
    # files of an earlier, larger run would otherwise linger next to the new ones
    for f in img_dir.iterdir():
        if _IMAGE_NAME.match(f.name) and f.name not in names:
            f.unlink()
    info = {
        "description": "digit scenes: detection scenes built from the sklearn handwritten digits",
        "generator": "activedet.data.digit_scenes",
        "version": GENERATOR_VERSION,
        "seed": int(seed),
        "split": split,
        "params": p,
        "class_probabilities": [float(x) for x in probs],
        "class_order": class_order,
        "source_indices": [int(x) for x in sources],
    }
    categories = [{"id": k + 1, "name": str(k), "supercategory": "digit"} for k in range(N_CLASSES)]
    write_json(out_dir / f"{split}.json",
               {"info": info, "images": images, "annotations": annotations, "categories": categories},
               indent=None)
    return {
        "images": n,
        "empty_images": int(empty),
        "annotations": len(annotations),
        "class_counts": {str(k): int(counts[k]) for k in range(N_CLASSES)},
        "dropped_objects": int(dropped),
        "distractors": int(distractors),
    }


def generate(out_dir: str | Path, seed: int = 0, n_pool: int = 2000, n_test: int = 500, image_size: int = 64,
             **params: Any) -> dict:
    """Write the digit-scenes pool and test splits under ``out_dir``.

    ``params`` override any other key of :data:`DEFAULTS`; a bad or unknown
    parameter raises ``ValueError`` naming it.  Returns a summary::

        {"out_dir", "seed", "seconds",
         "pool": {"images", "empty_images", "annotations", "class_counts": {"0": n, ...},
                  "dropped_objects", "distractors"},
         "test": {...}}
    """
    t0 = time.perf_counter()
    _check(_is_int(seed), "seed", "must be an integer", seed)
    _check(int(seed) >= 0, "seed", "must be >= 0", seed)
    p = dict(DEFAULTS)
    p.update(params)
    p.update(n_pool=n_pool, n_test=n_test, image_size=image_size)
    p = _validate(p)
    out_dir = Path(out_dir)

    digits, labels = load_source_digits()
    probs = class_frequencies(p["imbalance"], N_CLASSES, p["class_order_seed"])
    class_order = [int(k) for k in np.argsort(-probs, kind="stable")]
    sources = _split_sources(labels, int(seed), p["test_source_fraction"])
    summary: dict[str, Any] = {"out_dir": str(out_dir), "seed": int(seed)}
    for split, n in (("pool", p["n_pool"]), ("test", p["n_test"])):
        summary[split] = _generate_split(out_dir, split, n, int(seed), p, digits, labels,
                                         sources[split], probs, class_order)
    summary["seconds"] = round(time.perf_counter() - t0, 3)
    return summary
