"""A COCO-like image list built on the fly from a folder of images.

The strategies and :class:`~activedet.data.coco.DetectionDataset` read COCO
image records (id, file_name, width, height). A practitioner's unlabeled images
are just files in a folder, so the records are made here: file names relative
to the folder (POSIX separators, subfolders included), sizes read from the file
headers (the displayed frame: EXIF orientation applied), fresh ids after the labeled file's largest id.
"""
from __future__ import annotations

from pathlib import Path

from ..data.coco import CocoData
from ..data.images import image_size as displayed_size
from ..io import InputError

# Lower-case suffixes of the image files picked up from a folder.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def list_images(images_dir: str | Path) -> list[str]:
    """Image files under ``images_dir`` (recursively) as sorted POSIX paths relative to it.

    Hidden files and folders (names starting with '.') are skipped: they are
    tool caches (.ipynb_checkpoints, .thumbnails), not images to annotate.
    """
    root = Path(images_dir)
    if not root.is_dir():
        raise InputError(f"{root}: images folder not found")
    names = []
    for path in root.rglob("*"):
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file():
            names.append(rel.as_posix())
    return sorted(names)


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) as displayed (EXIF orientation applied, as annotation tools show it), from the header.

    A file PIL cannot read, or one above ``dataset.max_image_pixels``, is an InputError naming it.
    """
    return displayed_size(path)


def folder_with_labeled(images_dir: str | Path, labeled: CocoData) -> tuple[CocoData, list[int]]:
    """The labeled images plus every image of the folder not in the labeled file, with fresh ids.

    Returns the combined dataset (labeled annotations kept, the unlabeled images
    without any) and the ids given to the unlabeled images. The labeled file's
    ``file_name`` values are relative to ``images_dir`` (as for ``train``).
    """
    labeled_names = {Path(im["file_name"].replace("\\", "/")).as_posix() for im in labeled.images}
    next_id = max(labeled.image_ids, default=0) + 1
    new_images, new_ids = [], []
    for name in list_images(images_dir):
        if name in labeled_names:
            continue
        width, height = image_size(Path(images_dir) / name)
        new_images.append({"id": next_id, "file_name": name, "width": width, "height": height})
        new_ids.append(next_id)
        next_id += 1
    combined = CocoData(f"{images_dir} (folder) + {labeled.path}", labeled.images + new_images,
                        labeled.annotations, labeled.categories, labeled.info)
    return combined, new_ids
