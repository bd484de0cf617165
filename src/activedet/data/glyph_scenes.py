"""Glyph scenes: the pre-training source of the embedded default's backbone.

The papers start every cycle from an ImageNet-pretrained backbone. The CPU analogue here is a
detector pre-trained on scenes of *printed letters*: a source that shares neither classes nor
handwriting with the digit scenes (no digit, no sklearn image, no pool label is ever read), but
the same kind of pictures (thin strokes on cluttered, noisy, tinted grounds), as ImageNet shares
photographs with VOC.

Letters are rendered from the TrueType fonts that matplotlib ships (DejaVu Sans/Serif/Mono, STIX,
Computer Modern; regular, bold, italic), randomly rotated, sheared and thickened, thresholded to a
32x32 bitmap and block-summed to an 8x8 cell of 0..16 — the way the UCI/sklearn digits were made
from their 32x32 scans — so the scene renderer of :mod:`digit_scenes` can place them exactly as it
places digits. Letters that read as digits (B, D, G, I, J, O, Q, S, Z) are left out.
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from .digit_scenes import DEFAULTS, _SceneMaker, _validate

__all__ = ["LETTERS", "GlyphScenes", "font_files", "make_glyph_scenes", "render_glyph_cells"]

# 20 classes; none of them looks like a digit.
LETTERS = "ACEFHKLMNPRTUVWXYaeh"
# Fonts with Latin letters among those matplotlib ships (symbol-only STIX/cm fonts left out).
_FONTS = ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf", "DejaVuSans-BoldOblique.ttf",
          "DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf", "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf",
          "DejaVuSerif-Italic.ttf", "DejaVuSerif-BoldItalic.ttf", "STIXGeneral.ttf", "STIXGeneralBol.ttf",
          "STIXGeneralItalic.ttf", "STIXGeneralBolIta.ttf", "cmr10.ttf", "cmss10.ttf", "cmti10.ttf", "cmtt10.ttf",
          "cmb10.ttf")


def font_files() -> list[str]:
    """Paths of the TrueType fonts matplotlib ships that render the letters (RuntimeError when none is found)."""
    import matplotlib  # local import: only the pre-training renders glyphs

    root = os.path.join(matplotlib.get_data_path(), "fonts", "ttf")
    found = [os.path.join(root, f) for f in _FONTS if os.path.isfile(os.path.join(root, f))]
    if not found:
        raise RuntimeError(f"no TrueType font found under {root} (matplotlib installation incomplete)")
    return found


def _render_one(font: ImageFont.FreeTypeFont, letter: str, rng: np.random.Generator) -> np.ndarray | None:
    """One letter as an 8x8 cell in [0, 1] (peak 1), or None when the glyph came out empty."""
    canvas = Image.new("L", (96, 96), 0)
    ImageDraw.Draw(canvas).text((48, 48), letter, fill=255, font=font, anchor="mm")
    shear = rng.uniform(-0.25, 0.25)
    canvas = canvas.transform(canvas.size, Image.AFFINE, (1, shear, -shear * 48, 0, 1, 0), Image.BILINEAR)
    canvas = canvas.rotate(rng.uniform(-12, 12), Image.BILINEAR)
    thick = int(rng.integers(0, 3))  # 0: as drawn, 1: thinner, 2: thicker (pen width varies like handwriting)
    if thick == 1:
        canvas = canvas.filter(ImageFilter.MinFilter(3))
    elif thick == 2:
        canvas = canvas.filter(ImageFilter.MaxFilter(3))
    bbox = canvas.point(lambda v: 255 if v > 127 else 0).getbbox()
    if bbox is None:
        return None
    glyph = canvas.crop(bbox)
    w, h = glyph.size
    side = 32
    scale = side / max(w, h)  # the UCI digits: size-normalised into a 32x32 bitmap
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    glyph = glyph.resize((nw, nh), Image.BILINEAR)
    bitmap = np.zeros((side, side), dtype=np.float32)
    y0, x0 = (side - nh) // 2, (side - nw) // 2
    bitmap[y0:y0 + nh, x0:x0 + nw] = np.asarray(glyph, dtype=np.float32) > 127
    cells = bitmap.reshape(8, 4, 8, 4).sum(axis=(1, 3))  # on-pixels per 4x4 block: 0..16
    peak = cells.max()
    return cells / peak if peak > 0 else None


def render_glyph_cells(n_per_class: int, seed: int, letters: str = LETTERS) -> tuple[np.ndarray, np.ndarray]:
    """``(cells float32 (n_per_class * len(letters), 8, 8) in [0, 1], labels int64)``, deterministic in ``seed``."""
    fonts = [ImageFont.truetype(f, 56) for f in font_files()]
    rng = np.random.default_rng([int(seed), 11])
    cells, labels = [], []
    for k, letter in enumerate(letters):
        made = 0
        while made < n_per_class:
            cell = _render_one(fonts[int(rng.integers(len(fonts)))], letter, rng)
            if cell is None:
                continue
            cells.append(cell)
            labels.append(k)
            made += 1
    return np.stack(cells).astype(np.float32), np.asarray(labels, dtype=np.int64)


def make_glyph_scenes(n_images: int, seed: int, image_size: int = 64, glyphs_per_class: int = 200,
                      **scene_params: Any) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """``n_images`` scenes of letters: ``(images uint8 (N, S, S, 3), boxes [xyxy float32 (n_i, 4)], labels)``.

    The scenes use the digit-scenes renderer (clutter, contrast, tint, blur, noise; its defaults,
    overridden by ``scene_params``) with the letters of :data:`LETTERS` as classes, equally frequent.
    Deterministic in ``seed``.
    """
    p = dict(DEFAULTS)
    p.update(scene_params)
    p.update(image_size=int(image_size), imbalance=1.0)
    p = _validate(p)
    cells, labels = render_glyph_cells(glyphs_per_class, seed)
    probs = np.full(len(LETTERS), 1.0 / len(LETTERS))
    # fragments of straight letters (L, T, l-like strokes) still look like letters: none from L, T
    maker = _SceneMaker(p, cells, labels, np.arange(len(cells)), probs,
                        fragment_exclude=(LETTERS.index("L"), LETTERS.index("T")))
    images, boxes, classes = [], [], []
    for i in range(int(n_images)):
        img, objects, _ = maker.make(np.random.default_rng([int(seed), 3, i]))
        images.append(img)
        boxes.append(np.asarray([o[2] for o in objects], dtype=np.float32).reshape(-1, 4))
        classes.append(np.asarray([o[0] for o in objects], dtype=np.int64))
    return np.stack(images), boxes, classes


class GlyphScenes(torch.utils.data.Dataset):
    """Glyph scenes held in memory with the interface :func:`engine.train.train_detector` reads.

    ``dataset[i]`` is ``(uint8 tensor (3, S, S), target)`` as :class:`DetectionDataset` gives;
    ``records`` has one ``(image dict, ...)`` per image; ``categories`` are the letters.
    """

    def __init__(self, n_images: int, seed: int, image_size: int = 64, glyphs_per_class: int = 200,
                 **scene_params: Any):
        images, self.boxes, self.labels = make_glyph_scenes(n_images, seed, image_size, glyphs_per_class,
                                                            **scene_params)
        self.images = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
        self.categories = [{"id": k + 1, "name": c} for k, c in enumerate(LETTERS)]
        self.records = [({"id": i + 1, "width": image_size, "height": image_size},) for i in range(n_images)]
        self.size = int(image_size)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int):
        n = len(self.labels[i])
        target = {"boxes": torch.from_numpy(self.boxes[i]), "labels": torch.from_numpy(self.labels[i]),
                  "difficult": torch.zeros(n, dtype=torch.bool), "image_id": i + 1, "scale": (1.0, 1.0),
                  "orig_size": (self.size, self.size)}
        return self.images[i], target
