"""Choose which images to annotate next: from a folder of your own images, or from a pipeline selection.

Both paths end in the same annotation package (:mod:`.export`). The folder path
builds a combined dataset (labeled images + the folder's unlabeled images with
fresh ids) so every registered strategy scores it through its unchanged
``score(model, pool, labeled_ids, ...)`` / ``select(scores, budget, rng)``.
"""
from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import torch

from ..checkpoint import load_model
from ..data.coco import CocoData, load_coco, unused_categories
from ..data.dataset import DetectionDataset
from ..data.images import configure as configure_images
from ..device import resolve_device
from ..engine.predict import predict
from ..cycle import Selection, check_budget
from ..io import InputError
from ..strategies import build_strategy
from .boxes import DEFAULT_MIN_SCORE, SelectedImage
from .export import write_annotation_package
from .folder import folder_with_labeled
from .label_studio import DEFAULT_URL_PREFIX


def _score_or_none(value) -> float | None:
    return None if value is None or not math.isfinite(float(value)) else float(value)


def _check_categories(labeled: CocoData, ckpt: dict, model_path) -> None:
    """The labeled file and the model must name the same classes: imported label names map to its ids.

    The model may lack the labeled file's categories that no annotation names (training leaves them
    out unless dataset.keep_unused_categories).
    """
    have = sorted((c["id"], c["name"]) for c in labeled.categories)
    used = sorted((c["id"], c["name"]) for c in labeled.categories if c not in unused_categories(labeled))
    want = sorted((c["id"], c["name"]) for c in ckpt["categories"])
    if want not in (have, used):
        raise InputError(f"{labeled.path}: categories {have} differ from those the model {model_path} was trained "
                         f"on {want}; use the labeled file the model was trained on")


def _detections(model, ckpt: dict, coco: CocoData, images_dir, device, batch_size: int) -> list[dict]:
    ds = ckpt["params"]["dataset"]
    dataset = DetectionDataset(coco, images_dir, ds["input_size"], ds["keep_ratio"], cache=False,
                               categories=ckpt["categories"])
    with torch.no_grad():
        return predict(model, dataset, device, batch_size)


def select_from_folder(images_dir: str | Path, labeled_path: str | Path, model_path: str | Path, strategy_name: str,
                       budget: int, out_dir: str | Path, *, seed: int = 0, device: str = "auto", batch_size: int = 64,
                       strategy_options: dict | None = None, image_options: dict | None = None,
                       min_score: float = DEFAULT_MIN_SCORE, url_prefix: str = DEFAULT_URL_PREFIX) -> dict:
    """Score the folder's images not in the labeled file with a strategy, choose ``budget``, write the package.

    ``strategy_options`` replaces the ``strategies`` section of the checkpoint's
    params (the ones it was trained with); the input size and the rest stay the
    checkpoint's, so the images are fed exactly as in training. ``image_options`` (a params ``dataset``
    section) sets the pixel limit and high-bit scaling of :mod:`activedet.data.images`; default: the checkpoint's.
    """
    check_budget(budget, None, images_dir)  # a budget below 1 is refused before any model is loaded
    dev = resolve_device(device)
    model, ckpt = load_model(model_path, dev)
    configure_images(image_options if image_options is not None else ckpt["params"]["dataset"])
    params = copy.deepcopy(ckpt["params"])
    if strategy_options is not None:
        params["strategies"] = strategy_options
    strategy = build_strategy(strategy_name, params)
    if strategy.needs_model:
        strategy.check_model(ckpt, model_path)
    labeled = load_coco(labeled_path, params["dataset"]["on_box_outside"], allow_empty=True)
    _check_categories(labeled, ckpt, model_path)
    combined, unlabeled_ids = folder_with_labeled(images_dir, labeled)
    if not unlabeled_ids:
        raise InputError(f"{images_dir}: every image of the folder is already in {labeled_path}; nothing to select")
    check_budget(budget, len(unlabeled_ids), images_dir, what=f"the unlabeled images of {images_dir}")

    ds = params["dataset"]
    # Strategies without a model (random) read only the image records: decoding every image would be wasted.
    pool = DetectionDataset(combined, images_dir, ds["input_size"], ds["keep_ratio"],
                            cache=ds["cache_images"] and strategy.needs_model, categories=ckpt["categories"])
    if hasattr(strategy, "select_in_process"):  # MGRAL: lookup table and agent trained here, on this folder
        scores = strategy.select_in_process(model, ckpt, params, pool, labeled, budget, seed, dev, batch_size)
    else:
        scores = strategy.score(model if strategy.needs_model else None, pool, set(labeled.image_ids), dev,
                                batch_size)
    chosen = Selection.from_scores(strategy_name, strategy.select(scores, budget, np.random.default_rng(seed)),
                                   scores)
    by_id = {im["id"]: im for im in combined.images}
    selection = [SelectedImage(rank, by_id[i]["file_name"], i, int(by_id[i]["width"]), int(by_id[i]["height"]),
                               _score_or_none(score))
                 for rank, (i, score) in enumerate(zip(chosen.image_ids, chosen.scores), start=1)]
    chosen = chosen.image_ids
    detections = _detections(model, ckpt, combined.subset(chosen), images_dir, dev, batch_size)
    out = Path(out_dir)
    command = (f"python -m activedet import-labels --export <EXPORT FILE> --selected {out / 'selected.csv'}"
               f" --labeled {labeled_path}")
    paths = write_annotation_package(out, images_dir, selection, detections, ckpt["categories"], strategy=strategy_name,
                                     import_command=command, min_score=min_score, url_prefix=url_prefix,
                                     info={"description": f"detections of {model_path} on the images chosen by "
                                                          f"{strategy_name}", "images_dir": str(images_dir)})
    return {"selected": len(selection), "unlabeled": len(unlabeled_ids), "labeled": len(labeled.images),
            "paths": {k: str(v) for k, v in paths.items()}, "import_command": command}


def export_pipeline_selection(selected_json: str | Path, pool_path: str | Path, images_dir: str | Path,
                              model_path: str | Path, labeled_path: str | Path, out_dir: str | Path,
                              imported_path: str | Path, *, device: str = "auto", batch_size: int = 64,
                              min_score: float = DEFAULT_MIN_SCORE, url_prefix: str = DEFAULT_URL_PREFIX) -> dict:
    """The annotation package of a pipeline cycle's ``selected.json`` (pool ids, the strategy's ranks and scores).

    The README names the import command that writes ``imported_path``, the file
    the human-mode ``merge_labels`` rule waits for.
    """
    sel = Selection.read(selected_json)
    entries, strategy = list(zip(sel.image_ids, sel.scores)), sel.strategy
    dev = resolve_device(device)
    model, ckpt = load_model(model_path, dev)
    configure_images(ckpt["params"]["dataset"])
    pool = load_coco(pool_path, ckpt["params"]["dataset"]["on_box_outside"])
    chosen = pool.subset([i for i, _ in entries])  # an id not in the pool is an error naming it
    selection = [SelectedImage(rank, im["file_name"], im["id"], int(round(im["width"])), int(round(im["height"])),
                               _score_or_none(score))
                 for rank, (im, (_, score)) in enumerate(zip(chosen.images, entries), start=1)]
    detections = _detections(model, ckpt, chosen, images_dir, dev, batch_size)
    out = Path(out_dir)
    command = (f"python -m activedet import-labels --export <EXPORT FILE> --selected {out / 'selected.csv'}"
               f" --labeled {labeled_path} --imported-out {imported_path}")
    paths = write_annotation_package(out, images_dir, selection, detections, ckpt["categories"], strategy=strategy,
                                     import_command=command, min_score=min_score, url_prefix=url_prefix,
                                     info={"description": f"detections of {model_path} on {selected_json}"})
    return {"selected": len(selection), "paths": {k: str(v) for k, v in paths.items()}, "import_command": command}
