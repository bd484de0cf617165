"""PASCAL VOC trees written by hand: one annotation XML (and optionally its JPEG) and ImageSets lists."""
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def obj(name, xmin, ymin, xmax, ymax, difficult=0):
    return (name, xmin, ymin, xmax, ymax, difficult)


def write_voc(root: Path, year: str, name: str, size=(500, 375), objects=(), filename=None, image=False,
              raw_xml: str | None = None):
    """One VOC annotation (and optionally its JPEG) under root/<year>/."""
    ann = root / year / "Annotations" / f"{name}.xml"
    ann.parent.mkdir(parents=True, exist_ok=True)
    fname = filename if filename is not None else f"{name}.jpg"
    if raw_xml is None:
        objs = "".join(
            f"<object><name>{n}</name><pose>Unspecified</pose><truncated>0</truncated>"
            f"<difficult>{d}</difficult><bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax>"
            f"<ymax>{y2}</ymax></bndbox></object>" for n, x1, y1, x2, y2, d in objects)
        raw_xml = (f"<annotation><folder>{year}</folder><filename>{fname}</filename><size><width>{size[0]}</width>"
                   f"<height>{size[1]}</height><depth>3</depth></size><segmented>0</segmented>{objs}</annotation>")
    ann.write_text(raw_xml, encoding="utf-8")
    if image:  # seeded by the name: two names never share an image (check-dataset refuses duplicates)
        random_jpeg(root / year / "JPEGImages" / fname, size, zlib.crc32(name.encode()))
    return ann


def random_jpeg(path: Path, size, seed: int) -> Path:
    """A JPEG of uniform noise, ``size`` (width, height), the same for the same seed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(arr).save(path, quality=95)
    return path


def write_set(root: Path, year: str, set_name: str, names):
    path = root / year / "ImageSets" / "Main" / f"{set_name}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{n}\n" for n in names), encoding="utf-8")
    return path
