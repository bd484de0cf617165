"""Reading a user's image files as an annotation tool shows them: orientation, pixel values, size limits.

One notion of an image everywhere (reader, sizes in ``selected.csv``, pre-annotations, import,
contact sheet, training): the **displayed frame**, i.e. the stored pixels with the EXIF
``Orientation`` tag applied (the table of ``PIL.ImageOps.exif_transpose``), as browsers, Label Studio and CVAT
show a phone photo. Its size is :func:`image_size` (from the header, without decoding).

Pixel values become 8-bit RGB as a viewer shows them:

* 1-bit, 8-bit grey, palette, RGB(A), CMYK, YCbCr, LAB, HSV, grey+alpha: Pillow's ``convert("RGB")``
  (alpha dropped);
* 16-bit grey (``I;16``, ``I;16L``, ``I;16B``, ``I;16N``): scaled by the bit depth,
  ``round(v * 255 / 65535)`` — what browsers (and so Label Studio and CVAT) and GIMP display, as the PNG
  specification defines a sample's intensity as ``v / (2**depth - 1)``. A 12-bit sensor stored in 16 bits
  therefore looks dark, exactly as in the annotation tool; ``dataset.high_bit_scaling: min_max``
  stretches each such image from its own minimum to its maximum instead (ImageJ/Fiji's display);
* multi-channel 16-bit (48-bit RGB, 64-bit RGBA PNG): Pillow keeps the high byte of each sample
  (``v >> 8``, at most one level from the rule above), which is what viewers show;
* 32-bit integer ``I``: values within 0..65535 are 16-bit data (Pillow < 10 and some TIFF writers
  store 16-bit images so) and scale as above; other values (negative, above 65535) have no display
  range a viewer agrees on and are refused unless ``min_max`` is set;
* 32-bit float ``F``: values within 0..1 scale by 255 (GIMP's and scikit-image's convention for
  float images); other ranges are refused unless ``min_max``; NaN or infinite values are always refused.

Every problem a file can cause (missing, not an image, truncated, corrupt EXIF, above the pixel
limit, an unsupported mode) is an :class:`~activedet.io.InputError` naming the file. Images with
more pixels than ``dataset.max_image_pixels`` (default Pillow's decompression-bomb limit,
178,956,970 = 2 x ``PIL.Image.MAX_IMAGE_PIXELS``) are refused before decoding; 0 lifts the limit.
This module does not import torch.
"""
from __future__ import annotations

import contextlib
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from ..io import InputError

DEFAULT_MAX_IMAGE_PIXELS = 2 * 89478485  # Pillow's own error threshold (2 x Image.MAX_IMAGE_PIXELS)
SCALINGS = ("bit_depth", "min_max")
_SETTINGS = {"max_image_pixels": DEFAULT_MAX_IMAGE_PIXELS, "high_bit_scaling": "bit_depth"}
# EXIF orientations 5..8 turn the image by 90 degrees: the displayed width is the stored height.
_TRANSPOSED = (5, 6, 7, 8)
_ORIENTATION = 0x0112
# ImageOps.exif_transpose's table: EXIF orientation -> the transposition that gives the displayed frame
_EXIF_TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
                   4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270,
                   7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_90}
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")
_PILLOW_RGB = ("1", "L", "P", "RGB", "RGBA", "RGBX", "RGBa", "CMYK", "YCbCr", "LAB", "HSV", "LA", "La", "PA")


def configure(dataset: dict | None) -> None:
    """Take ``max_image_pixels`` and ``high_bit_scaling`` from a params ``dataset`` section (missing keys: defaults).

    The steps call this once with their params; the settings hold for the whole process.
    """
    dataset = dataset or {}
    limit = dataset.get("max_image_pixels", DEFAULT_MAX_IMAGE_PIXELS)
    scaling = dataset.get("high_bit_scaling", "bit_depth")
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
        raise InputError(f"dataset.max_image_pixels must be a whole number >= 0 (0: no limit), got {limit!r}")
    if scaling not in SCALINGS:
        raise InputError(f"dataset.high_bit_scaling must be one of {', '.join(SCALINGS)}, got {scaling!r}")
    _SETTINGS.update(max_image_pixels=limit, high_bit_scaling=scaling)


@contextlib.contextmanager
def _opened(path: Path, where: str | None):
    """``Image.open`` with our pixel limit instead of Pillow's (its warning and error off while the file is open)."""
    if not path.is_file():
        raise InputError(f"{_head(path, where)} not found")
    saved = Image.MAX_IMAGE_PIXELS
    try:
        Image.MAX_IMAGE_PIXELS = None  # checked below with the configured limit and a message naming the file
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            try:
                im = Image.open(path)
            except Exception as e:  # Pillow's plugins raise many types (OSError, SyntaxError, struct.error, ...)
                raise InputError(f"{_head(path, where)} is unreadable or corrupt ({_reason(e)})") from None
            try:
                limit = _SETTINGS["max_image_pixels"]
                if limit and im.width * im.height > limit:
                    raise InputError(f"{_head(path, where)} is {im.width}x{im.height} = {im.width * im.height:,} "
                                     f"pixels, above the limit dataset.max_image_pixels = {limit:,} (a guard "
                                     f"against decompression bombs); raise it, or set 0 for no limit, if the "
                                     f"image is yours")
                yield im
            finally:
                im.close()
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def _head(path: Path, where: str | None) -> str:
    """The start of a message: the annotation file and image id that named the file, then the file."""
    return f"{where}: image file {path}" if where and where != str(path) else f"{path}: the image"


def _reason(e: BaseException) -> str:
    text = str(e).splitlines()[0] if str(e) else ""
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def exif_orientation(im: Image.Image) -> int:
    """The EXIF Orientation tag (1..8; 1 when absent or unreadable)."""
    try:
        value = im.getexif().get(_ORIENTATION, 1)
    except Exception:  # a corrupt EXIF block: the tools show such an image as stored
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def image_size(path: str | Path, where: str | None = None) -> tuple[int, int]:
    """(width, height) of the image as displayed (EXIF orientation applied), from the header only.

    Raises InputError when the file is missing, not an image, or above the pixel limit.
    """
    path = Path(path)
    with _opened(path, where) as im:
        w, h = im.size
        return (h, w) if exif_orientation(im) in _TRANSPOSED else (w, h)


def _scaled(arr: np.ndarray, mode: str, path: Path, where: str | None) -> np.ndarray:
    """A single-channel high-bit image as uint8 per the rules of the module docstring."""
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        raise InputError(f"{_head(path, where)} (mode {mode}) holds NaN or infinite values")
    lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
    if _SETTINGS["high_bit_scaling"] == "min_max":
        scaled = (arr - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(arr)
    elif mode in _SIXTEEN_BIT or (mode == "I" and lo >= 0 and hi <= 65535):
        scaled = arr * (255.0 / 65535.0)
    elif mode == "F" and lo >= 0 and hi <= 1:
        scaled = arr * 255.0
    else:
        kind = "32-bit integer" if mode == "I" else "floating-point" if mode == "F" else f"mode {mode}"
        expected = "0..65535" if mode == "I" else "0..1" if mode == "F" else "a known range"
        raise InputError(f"{_head(path, where)} is a {kind} image with values {lo:g}..{hi:g}, outside "
                         f"{expected}: no display range is standard for it; set dataset.high_bit_scaling: min_max "
                         f"to stretch each image from its minimum to its maximum")
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def read_image(path: str | Path, where: str | None = None) -> Image.Image:
    """The image as an annotation tool displays it: 8-bit RGB, EXIF orientation applied.

    ``where`` prefixes the error messages (the annotation file and image id); raises InputError
    for a missing, corrupt, truncated, too large or unsupported image.
    """
    path = Path(path)
    with _opened(path, where) as im:
        try:
            im.load()
            mode = im.mode
            if mode in _PILLOW_RGB:
                out = im.convert("RGB")
            elif mode in _SIXTEEN_BIT or mode in ("I", "F"):
                out = Image.fromarray(_scaled(np.asarray(im), mode, path, where), "L").convert("RGB")
            else:
                raise InputError(f"{_head(path, where)} has pixel mode {mode!r}, which is not supported "
                                 f"(convert it to 8- or 16-bit grey or RGB)")
            # The displayed frame: the transposition of ImageOps.exif_transpose (the tools' convention), applied
            # after the conversion because Pillow's transpose garbles 16-bit modes; a corrupt EXIF counts as none.
            method = _EXIF_TRANSPOSE.get(exif_orientation(im))
            return out.transpose(method) if method is not None else out
        except InputError:
            raise
        except MemoryError:
            raise InputError(f"{_head(path, where)} ({im.width}x{im.height}) does not fit in memory") from None
        except Exception as e:  # truncated data, corrupt streams: Pillow raises OSError, ValueError, SyntaxError, ...
            raise InputError(f"{_head(path, where)} is unreadable or corrupt ({_reason(e)})") from None


def stored_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of the stored pixels, before the EXIF orientation (for messages about it)."""
    with _opened(Path(path), None) as im:
        return im.size
