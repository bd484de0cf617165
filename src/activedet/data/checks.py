"""Checks of a dataset and a labeling plan that run before the first job that needs them.

Everything knowable before the first training is checked before it, for every dataset format:

* :func:`plan_problems` - cheap, at DAG-build time (``snakemake -n`` shows it): every file the
  configuration names is there, annotation files are readable COCO (or VOC image-set lists), the pool
  holds ``initial_labeled + budget * (cycles - 1)`` images, the classes are present (the pool and the
  test split have boxes; the test split's classes are the pool's), no image is listed twice by path
  within a split or by both splits, and a generating rule (digit scenes, VOC conversion) would not
  replace a file it did not write.
* :func:`check_dataset` - the first job (rule ``check_dataset``, before ``init_split``): decodes every
  pool and test image (size as annotated) and hashes its bytes, so the same image stored twice under
  two names is found too. Its report (``checks/dataset.json``) carries the content digests that DVC's
  ``active_learning`` stage depends on.

One image, one identity: the same file (by path, or by SHA-256 of its bytes) twice within a split or in
both the pool and the test split is refused; ``dataset.duplicate_images: warn`` turns that into a
warning (the data are then used as they are). This module imports no torch until images are decoded.
"""
from __future__ import annotations

import hashlib
import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath

from ..io import InputError, read_json
from .coco import CocoData, check_file_name, validate_coco

DIGIT_SCENES_GENERATOR = "activedet.data.digit_scenes"
# digit_scenes._IMAGE_NAME, the temporary files of its killed writes, and Snakemake's directory-output marker
_GENERATED_IMAGE = re.compile(r"^\d{6,}\.png$|^\.\d{6,}\.png\.[a-z0-9_]{8}\.tmp$|^\.snakemake_timestamp$")
MAX_LISTED = 20


def written_by(path: str | os.PathLike) -> str | None:
    """Which of activedet's generating rules wrote the COCO JSON ``path``: ``digit_scenes``, ``voc`` or None.

    The digit-scenes generator marks its files with ``info.generator``, the VOC conversion with
    ``info.voc_root``; any other file (or an unreadable one) is a user's.
    """
    try:
        info = read_json(path).get("info")
    except (InputError, AttributeError):
        return None
    if not isinstance(info, dict):
        return None
    if info.get("generator") == DIGIT_SCENES_GENERATOR:
        return "digit_scenes"
    if "voc_root" in info:
        return "voc"
    return None


def foreign_files(folder: str | os.PathLike, fmt: str) -> list[str]:
    """Problems (``<file>: …``) for the files in a generated dataset ``folder`` its rule did not write.

    ``fmt`` ``digit_scenes``: ``pool.json``, ``test.json`` and ``{pool,test}/images/`` (Snakemake empties a
    directory output before the generator runs); ``voc``: the converted ``pool.json`` and ``test.json``.
    """
    folder = Path(folder)
    problems = []
    for split in ("pool", "test"):
        js = folder / f"{split}.json"
        if js.exists() and written_by(js) != fmt:
            problems.append(f"{js}: not written by activedet's {fmt.replace('_', '-')} rule, which would replace it "
                            f"(dataset.format: {fmt}); for your own data set dataset.format: coco and "
                            f"dataset.pool_annotations / test_annotations, or choose another dataset.name")
        images = folder / split / "images"
        if fmt == "digit_scenes" and images.is_dir():
            theirs = sorted(p.name for p in images.iterdir() if not _GENERATED_IMAGE.match(p.name))
            if theirs:
                more = f" and {len(theirs) - 3} more" if len(theirs) > 3 else ""
                problems.append(f"{images}: holds files the digit-scenes generator did not write "
                                f"({', '.join(theirs[:3])}{more}), which it would delete (dataset.format: "
                                f"digit_scenes); for your own data set dataset.format: coco, or choose another "
                                f"dataset.name")
    return problems


def _identity_key(images_dir: str | os.PathLike, file_name: str) -> str:
    return os.path.normpath(os.path.abspath(check_file_name(images_dir, file_name, "")))


def path_duplicates(pool: CocoData, pool_images, test: CocoData | None = None, test_images=None) -> list[str]:
    """The same image file (by path) listed twice within a split or by both splits: one problem each."""
    problems: list[str] = []
    splits = [(pool, pool_images)] + ([(test, test_images)] if test is not None else [])
    keyed = ((coco.path, im["id"], _identity_key(images_dir, im["file_name"]))
             for coco, images_dir in splits for im in coco.images)
    for path, i, key, where, first in _repeats(keyed):
        if where == path:
            problems.append(f"{path}: image ids {first} and {i} are the same file {key}")
        else:
            problems.append(f"{path}: image id {i} is the file {key}, image id {first} of "
                            f"the pool {where}: a test image must not be a pool image")
    return problems


def _repeats(keyed):
    """For ``(split path, image id, key)`` in order, each later image whose key came before:
    ``(path, id, key, the first one's split path, the first one's id)``."""
    seen: dict = {}
    for path, i, key in keyed:
        if key in seen:
            yield (path, i, key, *seen[key])
        else:
            seen[key] = (path, i)


def class_problems(pool: CocoData, test: CocoData | None) -> list[str]:
    """The classes are present: boxes in the pool and the test split, the test's classes among the pool's."""
    problems = []
    if not pool.annotations:
        problems.append(f"{pool.path}: the pool has no boxes at all: no class to learn")
    if test is not None:
        if not test.annotations:
            problems.append(f"{test.path}: the test split has no boxes: mAP is undefined")
        names = {c["id"]: c["name"] for c in pool.categories}
        used = {a["category_id"] for a in test.annotations}
        wrong = sorted((c["id"], c["name"]) for c in test.categories
                       if c["id"] in used and names.get(c["id"]) != c["name"])
        if wrong:
            problems.append(f"{test.path}: categories {', '.join(f'{i} {n!r}' for i, n in wrong)} are not the "
                            f"pool's ({', '.join(f'{i} {n!r}' for i, n in sorted(names.items()))}): both splits "
                            f"need the same category ids and names")
    return problems


def _read_coco(path: str, what: str, on_box_outside: str) -> CocoData:
    if not Path(path).is_file():
        raise InputError(f"{path}: {what} not found (missing input: it is yours to provide, nothing generates it)")
    coco, _ = validate_coco(read_json(path), str(path), on_box_outside)  # clipping warnings: the jobs print them
    if not coco.images:
        raise InputError(f"{path}: the dataset has no images")
    return coco


def _folder(path: str, what: str) -> list[str]:
    if not Path(path).is_dir():
        return [f"{path}: {what} folder not found"]
    return []


def plan_problems(dataset: dict, active: dict, data_folder: str | None) -> tuple[list[str], list[str]]:
    """(errors, warnings) of a dataset configuration and a labeling plan, cheap enough for every dry run.

    ``dataset`` and ``active`` are the validated params sections; ``data_folder`` is
    ``<data_dir>/<dataset.name>`` where the generating rules write (digit_scenes, voc). Each
    message names its file: ``<file>: <problem>``.
    """
    fmt = dataset["format"]
    needed = active["initial_labeled"] + active["budget"] * (active["cycles"] - 1)
    errors: list[str] = []
    n_pool = None
    dup: list[str] = []
    if fmt == "digit_scenes":
        errors += foreign_files(data_folder, "digit_scenes")
        n_pool = dataset["digit_scenes"]["n_pool"]
        source = "params.yaml"
    elif fmt == "coco":
        errors += _folder(dataset["pool_images"], "dataset.pool_images")
        errors += _folder(dataset["test_images"], "dataset.test_images")
        splits = {}
        for split in ("pool", "test"):
            try:
                splits[split] = _read_coco(dataset[f"{split}_annotations"], f"dataset.{split}_annotations",
                                           dataset["on_box_outside"])
            except InputError as e:
                errors.append(str(e))
        if "pool" in splits:
            n_pool, source = len(splits["pool"].images), splits["pool"].path
            errors += class_problems(splits["pool"], splits.get("test"))
            dup = path_duplicates(splits["pool"], dataset["pool_images"], splits.get("test"), dataset["test_images"])
    elif fmt == "voc":
        from .voc import image_set_file, parse_image_sets, read_image_set

        names = {}
        for split in ("pool", "test"):
            root = dataset[f"{split}_images"]
            if not Path(root).is_dir():
                keys = [f"dataset.{s}_images" for s in ("pool", "test") if dataset[f"{s}_images"] == root]
                message = (f"{root}: VOCdevkit folder not found ({', '.join(keys)}; missing input: nothing "
                           f"generates it, download PASCAL VOC or link your copy there)")
                if message not in errors:
                    errors.append(message)
                continue
            try:
                entries = parse_image_sets(dataset[f"{split}_annotations"])
                missing = [image_set_file(root, e) for e in entries if not image_set_file(root, e).is_file()]
                errors += [f"{f}: VOC image set file not found (dataset.{split}_annotations; missing input: "
                           f"nothing generates it)" for f in missing]
                if not missing:
                    names[split] = [(root, PurePosixPath(x).parts[0], n) for x in entries
                                    for n in read_image_set(root, x)]
            except InputError as e:
                errors.append(str(e))
        errors += foreign_files(data_folder, "voc")
        if "pool" in names:
            n_pool, source = len(names["pool"]), f"{dataset['pool_images']} ({dataset['pool_annotations']})"
        if "pool" in names and "test" in names:
            keys = {(os.path.abspath(r), y, n) for r, y, n in names["pool"]}
            shared = [f"{y}/{n}" for r, y, n in names["test"] if (os.path.abspath(r), y, n) in keys]
            if shared:
                dup.append(f"{dataset['test_images']} ({dataset['test_annotations']}): {len(shared)} test images "
                           f"are pool images too ({', '.join(shared[:5])}"
                           f"{' …' if len(shared) > 5 else ''}): a test image must not be a pool image")
    if n_pool is not None and needed > n_pool:
        errors.append(f"{source}: active.initial_labeled + active.budget * (active.cycles - 1) = {needed} "
                      f"exceeds the pool ({n_pool} images)")
    warnings: list[str] = []
    if dup:
        if dataset.get("duplicate_images", "error") == "warn":
            warnings += dup
        else:
            errors += [d + " (dataset.duplicate_images: warn accepts it)" for d in dup]
    return errors, warnings


def summarize(problems: list[str]) -> str:
    """The first problems, one per line, and how many more."""
    shown = problems[:MAX_LISTED]
    more = f"\n… and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
    return "\n".join(shown) + more


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _decode(coco: CocoData, images_dir, im: dict) -> tuple[str | None, str | None]:
    """(sha256 of the file, problem): the image decodes to the annotated size (as DetectionDataset reads it)."""
    from .dataset import read_image

    where = f"{coco.path}: image id {im['id']}"
    try:
        path = check_file_name(images_dir, im["file_name"], where)
        pil = read_image(path, where)
        if pil.size != (int(round(im["width"])), int(round(im["height"]))):
            raise InputError(f"{where}: image file is {pil.size[0]}x{pil.size[1]} but the annotation says "
                             f"{im['width']}x{im['height']}")
        return _sha256(path), None
    except InputError as e:
        return None, str(e)


def check_dataset(pool: CocoData, pool_images, test: CocoData, test_images, duplicate_images: str = "error",
                  threads: int = 1) -> dict:
    """Decode every pool and test image and check one image, one identity, by path and by content.

    Returns the report ``{"pool": {...}, "test": {...}, "warnings": [...]}`` with per split the
    number of images and boxes and ``images_sha256``, a SHA-256 over the images' digests in id order.
    Raises InputError listing every problem (``<file>: <problem>`` per line).
    """
    errors = class_problems(pool, test)
    dup = path_duplicates(pool, pool_images, test, test_images)
    splits = {"pool": (pool, pool_images), "test": (test, test_images)}
    digests: dict[str, dict[int, str]] = {}
    with ThreadPoolExecutor(max(1, threads)) as ex:  # decoding and hashing release the GIL
        for name, (coco, images_dir) in splits.items():
            results = list(ex.map(lambda im: _decode(coco, images_dir, im), coco.images))
            errors += [p for _, p in results if p]
            digests[name] = {im["id"]: d for im, (d, _) in zip(coco.images, results) if d}
    keyed = ((coco.path, i, d) for name, (coco, _) in splits.items() for i, d in digests[name].items())
    for path, i, d, where, first in _repeats(keyed):
        if where == path:
            dup.append(f"{path}: image ids {first} and {i} have the same content (SHA-256 {d[:12]}…)")
        else:
            dup.append(f"{path}: image id {i} has the content of image id {first} of the pool {where} "
                       f"(SHA-256 {d[:12]}…): a test image must not be a pool image")
    warnings = []
    if duplicate_images == "warn":
        warnings = dup
    else:
        errors += [d + " (dataset.duplicate_images: warn accepts it)" for d in dup]
    if errors:
        raise InputError(summarize(errors))
    report = {"warnings": warnings}
    for name, coco in (("pool", pool), ("test", test)):
        h = hashlib.sha256("".join(f"{i}:{d}\n" for i, d in sorted(digests[name].items())).encode())
        report[name] = {"file": coco.path, "images": len(coco.images), "boxes": len(coco.annotations),
                        "images_sha256": h.hexdigest()}
    return report
