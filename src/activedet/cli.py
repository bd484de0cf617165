"""Command line: ``python -m activedet <step> ...`` with explicit input and output paths.

Each step is what one pipeline job runs. Parameters come from ``--params``: a
params.yaml, or an inline JSON object (what the Snakemake rules pass), always
validated against the schema with defaults filled.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .io import InputError, read_json, write_json


THREADS_HELP = ("torch threads (default: params num_threads, else resources.train/score.threads as the pipeline's "
                "job; 0: torch's default, one per core)")


def _params(args):
    from . import params
    from .data.images import configure

    p = params.load(getattr(args, "params", None))
    if getattr(args, "backbone_weights", None):  # the pipeline's pretrained backbone file
        p["detector"]["backbone_weights"] = args.backbone_weights
    configure(p["dataset"])  # the pixel limit and high-bit scaling of every image this step reads
    return p


def _dataset(params, coco, images_dir, categories=None):
    """The detector's dataset; ``categories`` None: a training set, whose classes :func:`_classes` chooses."""
    from .data.dataset import DetectionDataset

    ds = params["dataset"]
    if categories is None:
        categories = _classes(params, coco)
    return DetectionDataset(coco, images_dir, ds["input_size"], ds["keep_ratio"], ds["cache_images"], categories)


def _classes(params, labeled):
    """The detector's classes for a labeled set, in category-id order.

    A pipeline labeled set (init-split marked it) keeps the categories chosen on the whole pool; a
    labeled file of one's own (the human-in-the-loop path, where it is all the labels there are) loses
    those no annotation names, unless dataset.keep_unused_categories.
    """
    from .data.coco import POOL_CATEGORIES_KEY, without_unused_categories

    if not params["dataset"]["keep_unused_categories"] and not labeled.info.get(POOL_CATEGORIES_KEY):
        labeled = without_unused_categories(labeled, "the labeled set")
    return sorted(labeled.categories, key=lambda c: c["id"])


def _load(path, params, allow_empty=False):
    from .data.coco import load_coco

    return load_coco(path, params["dataset"]["on_box_outside"], allow_empty=allow_empty)


def _threads(params, args, kind: str = "train") -> None:
    """Set torch's intra-op threads for a step: params ``num_threads``, else ``--threads``, else the threads the
    pipeline gives this kind of job (``resources.<kind>.threads``, 1 by default).

    Float sums depend on the thread count, so a step run by hand matches its pipeline job only on the same
    count; ``--threads 0`` leaves torch's default (one per core).
    """
    import torch

    n = params.get("num_threads") or getattr(args, "threads", None)
    if n is None:
        n = params.get("resources", {}).get(kind, {}).get("threads", 1)
    if n:
        torch.set_num_threads(n)


def cmd_make_dataset(args) -> int:
    from .data.checks import foreign_files
    from .data.digit_scenes import generate

    p = _params(args)
    foreign = foreign_files(args.out, "digit_scenes")  # never replace or delete a user's files
    if foreign:
        raise InputError("\n".join(foreign))
    cfg = dict(p["dataset"]["digit_scenes"])
    summary = generate(args.out, **cfg)
    print(json.dumps({k: v for k, v in summary.items() if not isinstance(v, (list, dict))}))
    return 0


def cmd_pretrain(args) -> int:
    from .engine.pretrain import pretrain_backbone

    p = _params(args)
    _threads(p, args)
    summary = pretrain_backbone(p, args.out, args.detector)
    if args.summary:
        write_json(args.summary, summary)
    print(json.dumps(summary))
    return 0


def cmd_init_split(args) -> int:
    from .data.coco import POOL_CATEGORIES_KEY, CocoData, without_unused_categories
    from .data.splits import initial_split

    p = _params(args)
    pool = _load(args.pool, p)
    if not p["dataset"]["keep_unused_categories"]:
        pool = without_unused_categories(pool, "the pool")
    # the labeled sets of every cycle carry the pool's classes (training keeps them as they are)
    pool = CocoData(pool.path, pool.images, pool.annotations, pool.categories,
                    {**pool.info, POOL_CATEGORIES_KEY: str(args.pool)})
    labeled = initial_split(pool, args.size, args.seed, p["dataset"]["duplicate_images"])
    write_json(args.out, labeled.to_dict())
    print(f"{args.out}: {len(labeled.images)} of {len(pool.images)} pool images labeled (seed {args.seed})")
    return 0


def cmd_check_dataset(args) -> int:
    from .data.checks import check_dataset

    p = _params(args)
    pool, test = _load(args.pool, p), _load(args.test, p)
    report = check_dataset(pool, args.pool_images, test, args.test_images, p["dataset"]["duplicate_images"],
                           threads=args.threads or 1)
    for w in report["warnings"]:
        print(f"warning: {w}")
    write_json(args.out, report)
    print(f"{args.out}: {report['pool']['images']} pool and {report['test']['images']} test images checked")
    return 0


def cmd_voc_to_coco(args) -> int:
    from .data.voc import read_voc, summary

    p = _params(args)
    sources = [(args.root, args.sets)] + [tuple(s) for s in args.class_sets or []]
    coco = read_voc(args.root, args.sets, p["dataset"]["on_box_outside"], p["dataset"]["classes"], sources)
    write_json(args.out, coco.to_dict(), indent=None)
    print(json.dumps({"out": args.out, **summary(coco)}))
    return 0


def cmd_train(args) -> int:
    from .engine.train import train_detector

    p = _params(args)
    _threads(p, args)
    labeled = _load(args.labeled, p)
    if not labeled.annotations:
        raise InputError(f"{args.labeled}: the labeled set has no boxes at all; nothing to train on")
    t0 = time.perf_counter()
    ds = _dataset(p, labeled, args.images)
    load_s = time.perf_counter() - t0
    state = args.state or f"{args.out}.resume"
    summary = train_detector(p, ds, args.out, args.seed, state_path=state)
    summary["load_seconds"] = load_s
    if args.summary:
        write_json(args.summary, summary)
    print(json.dumps(summary))
    return 0


def method_inputs(args, method: str, label: str):
    """Params (threads set), the options of ``--strategy`` (a ``method`` or its variant) and the labeled set."""
    from .strategies import resolve

    p = _params(args)
    _threads(p, args)
    base, options = resolve(args.strategy, p)
    if base != method:
        raise InputError(f"{args.command}: --strategy {args.strategy} is not {label} or one of its variants")
    labeled = _load(args.labeled, p)
    if not labeled.annotations:
        raise InputError(f"{args.labeled}: the labeled set has no boxes at all; nothing to train on")
    return p, options, labeled


def cmd_train_miaod(args) -> int:
    import numpy as np

    from .data.coco import CocoData
    from .data.splits import unlabeled_ids
    from .engine.miaod import train_miaod

    p, options, labeled = method_inputs(args, "miaod", "MI-AOD")
    pool = _load(args.pool, p)
    unl = unlabeled_ids(pool, labeled)
    n = min(len(unl), max(1, round(len(labeled.images) * options["unlabeled_ratio"])))
    if n == 0:
        raise InputError(f"{args.pool}: no unlabeled images left for MI-AOD's unlabeled training")
    chosen = sorted(int(i) for i in np.random.default_rng([args.seed, len(labeled.images)]).choice(unl, n, replace=False))
    # The unlabeled images enter training without their annotations.
    unlabeled = CocoData(pool.path, pool.subset(chosen).images, [], pool.categories, pool.info)
    ds_l = _dataset(p, labeled, args.images)
    ds_u = _dataset(p, unlabeled, args.images, ds_l.categories)
    summary = train_miaod(p, ds_l, ds_u, args.out, args.seed, state_path=args.state or f"{args.out}.resume",
                          options=options)
    if args.summary:
        write_json(args.summary, summary)
    print(json.dumps({k: v for k, v in summary.items() if k != "phases"}))
    return 0


def cmd_train_ll4al(args) -> int:
    from .engine.ll4al import train_ll4al

    p, options, labeled = method_inputs(args, "ll4al", "LL4AL")
    ds = _dataset(p, labeled, args.images)
    summary = train_ll4al(p, ds, args.out, args.seed, state_path=args.state or f"{args.out}.resume", options=options)
    if args.summary:
        write_json(args.summary, summary)
    print(json.dumps(summary))
    return 0


def cmd_evaluate(args) -> int:
    import torch

    from .data.images import configure as configure_images
    from .engine.predict import predict
    from .engine.train import load_model, resolve_device
    from .evaluation import evaluate_detections

    t0 = time.perf_counter()
    device = resolve_device(args.device)
    model, ckpt = load_model(args.model, device)
    p = ckpt["params"]
    _threads(p, args, "score")
    configure_images(p["dataset"])  # read the test images as the model's training images were read
    test = _load(args.annotations, p)
    ds = _dataset(p, test, args.images, ckpt["categories"])
    with torch.no_grad():
        dets = predict(model, ds, device, args.batch_size)
    metrics = evaluate_detections(test.to_dict(), dets)
    metrics["n_labeled"] = ckpt.get("n_images")
    metrics["seconds"] = time.perf_counter() - t0
    write_json(args.out, metrics)
    if args.predictions:
        write_json(args.predictions, dets, indent=None)
    print(json.dumps({k: metrics[k] for k in ("map50", "map50_area", "coco_ap", "coco_ap50")}))
    return 0


def cmd_score(args) -> int:
    from .data.coco import CocoData
    from .engine.train import load_model, resolve_device
    from .io import atomic_path
    from .strategies import build_strategy

    t0 = time.perf_counter()
    p = _params(args)
    _threads(p, args, "score")
    strategy = build_strategy(args.strategy, p)
    pool = _load(args.pool, p)
    labeled = _load(args.labeled, p)
    labeled_ids = set(labeled.image_ids)
    # Strategies see the labeled images' boxes from the labeled file and no box of an unlabeled image
    # (the pool file may hold the oracle's ground truth, or, with people labeling, lack imported labels).
    in_pool = set(pool.image_ids)
    pool = CocoData(pool.path, pool.images, [a for a in labeled.annotations if a["image_id"] in in_pool],
                    pool.categories, pool.info)
    device = resolve_device(p["device"])
    model, ckpt = (None, None)
    categories = None
    if strategy.needs_model:
        if not args.model:
            raise InputError(f"--strategy {args.strategy} scores with a trained detector: give --model model.pt")
        model, ckpt = load_model(args.model, device)
        strategy.check_model(ckpt, args.model)
        categories = ckpt["categories"]
    ds = _dataset(p, pool, args.images, categories) if strategy.needs_model else _PoolIds(pool)
    t1 = time.perf_counter()
    scores = strategy.score(model, ds, labeled_ids, device, args.batch_size)
    seconds = time.perf_counter() - t1
    with atomic_path(args.out) as tmp:
        scores.to_parquet(tmp, index=False)
    print(f"{args.out}: scored {int((~scores['labeled']).sum())} unlabeled images in {seconds:.2f}s "
          f"(total {time.perf_counter() - t0:.2f}s)")
    if args.timing:
        write_json(args.timing, {"score_seconds": seconds, "total_seconds": time.perf_counter() - t0})
    return 0


class _PoolIds:
    """Stand-in for a dataset when a strategy needs only the image ids (random)."""

    def __init__(self, coco):
        self.records = [(im, None, None, None) for im in coco.images]


def cmd_select(args) -> int:
    import numpy as np

    from .io import read_parquet
    from .strategies import build_strategy

    p = _params(args)
    scores_path = Path(args.scores)
    scores = read_parquet(scores_path, "scores table", ["image_id", "score", "labeled"], " (the score step writes them)")
    n_unl = int((~scores["labeled"]).sum())
    if args.budget < 1:
        raise InputError(f"--budget must be at least 1, got {args.budget}")
    if args.budget > n_unl:
        raise InputError(f"{scores_path}: active.budget ({args.budget}) is larger than the unlabeled pool "
                         f"({n_unl} images left); lower active.budget or active.cycles")
    strategy = build_strategy(args.strategy, p)
    rng = np.random.default_rng([args.seed, args.cycle])
    t0 = time.perf_counter()
    chosen = strategy.select(scores, args.budget, rng)
    by_id = scores.set_index("image_id")["score"]
    write_json(args.out, {"strategy": args.strategy, "seed": args.seed, "cycle": args.cycle, "budget": args.budget,
                          "seconds": time.perf_counter() - t0,
                          "selected": [{"image_id": i, "rank": r + 1,
                                        "score": None if np.isnan(by_id[i]) else float(by_id[i])}
                                       for r, i in enumerate(chosen)]})
    print(f"{args.out}: selected {len(chosen)} images with {args.strategy}")
    return 0


def _selected_ids(path) -> list[int]:
    """Image ids of a selected.json, in rank order."""
    from .io import read_json

    sel = read_json(path)
    try:
        return [int(s["image_id"]) for s in sel["selected"]]
    except (KeyError, TypeError, ValueError):
        raise InputError(f"{path}: expected {{'selected': [{{'image_id': ...}}, ...]}}") from None


def cmd_merge(args) -> int:
    from .data.splits import merge_labels

    p = _params(args)
    labeled = _load(args.labeled, p)
    pool = _load(args.pool, p)
    ids = _selected_ids(args.selected)
    merged = merge_labels(labeled, ids, pool, args.budget, source=args.selected)
    write_json(args.out, merged.to_dict())
    print(f"{args.out}: {len(merged.images)} labeled images (+{len(ids)})")
    return 0


def cmd_report(args) -> int:
    from .report import write_report

    p = _params(args)
    pool = _load(args.pool, p)
    a = p["active"]
    out = write_report(args.experiment_dir, a["strategies"], a["seeds"], a["cycles"], len(pool.images),
                       args.out_dir, cost=p["cost"], stopping=p["stopping"] if args.stopping else None,
                       categories=pool.categories)
    summary = out["summary"]
    if args.metrics:  # one number per strategy, so that `dvc metrics show` stays narrow; the rest: summary.csv
        write_json(args.metrics, {row["strategy"]: {"alc": row["alc_mean"]} for row in summary.to_dict("records")})
    with __import__("pandas").option_context("display.width", 200, "display.max_columns", 12):
        print(summary[["strategy", "n_seeds", "alc_mean", "alc_std", "alc_diff_vs_random",
                       "alc_diff_ci95_low", "alc_diff_ci95_high", "alc_boxes", "alc_seconds"]].to_string(index=False))
    return 0


def cmd_stop_set(args) -> int:
    from .stopping import stop_set_ids

    p = _params(args)
    pool = _load(args.pool, p)
    labeled = _load(args.labeled, p)
    ids = stop_set_ids(pool.image_ids, labeled.image_ids, args.size, args.seed)
    write_json(args.out, {"seed": args.seed, "image_ids": ids,
                          "description": "stop set: unlabeled pool images whose predictions the stopping signal "
                                         "compares from cycle to cycle (never their labels)"})
    print(f"{args.out}: {len(ids)} stop-set images")
    return 0


def _predict_pool_subset(args, image_ids) -> tuple[list, dict, "CocoData"]:  # noqa: F821
    """``--model``'s detections on the pool images ``image_ids``: (COCO results, checkpoint, the subset)."""
    import torch

    from .engine.predict import predict
    from .engine.train import load_model, resolve_device

    device = resolve_device(args.device)
    model, ckpt = load_model(args.model, device)
    p = ckpt["params"]
    _threads(p, args)
    subset = _load(args.pool, p).subset(image_ids)
    ds = _dataset(dict(p, dataset=dict(p["dataset"], cache_images=False)), subset, args.images, ckpt["categories"])
    with torch.no_grad():
        return predict(model, ds, device, args.batch_size), ckpt, subset


def cmd_predict_stop_set(args) -> int:
    ids = read_json(args.stop_set)["image_ids"]
    dets, _, _ = _predict_pool_subset(args, ids)
    write_json(args.out, dets, indent=None)
    print(f"{args.out}: {len(dets)} detections on {len(ids)} stop-set images")
    return 0


def cmd_selection_sheet(args) -> int:
    from .hitl.boxes import SelectedImage
    from .hitl.export import boxes_by_image
    from .hitl.sheet import contact_sheet

    sel = read_json(args.selected)
    entries = [(int(s["image_id"]), s.get("score")) for s in sel["selected"]]
    dets, ckpt, chosen = _predict_pool_subset(args, [i for i, _ in entries])
    by_id = {im["id"]: im for im in chosen.images}
    selection = [SelectedImage(rank, by_id[i]["file_name"], i, int(round(by_id[i]["width"])),
                               int(round(by_id[i]["height"])), None if score is None else float(score))
                 for rank, (i, score) in enumerate(entries, start=1)]
    boxes = boxes_by_image(dets, selection, ckpt["categories"], args.min_score)
    contact_sheet(args.out, args.images, selection, boxes, [c["name"] for c in ckpt["categories"]], args.title)
    print(f"{args.out}: {len(selection)} selected images with the model's boxes")
    return 0


def cmd_resolve_params(args) -> int:
    import yaml

    from .io import atomic_path

    p = _params(args)
    with atomic_path(args.out) as tmp:
        Path(tmp).write_text("# The experiment's parameters after validation, schema defaults filled in.\n"
                             + yaml.safe_dump(p, sort_keys=False), encoding="utf-8")
    print(f"{args.out}: resolved parameters")
    return 0


# ---------------------------------------------------------------- human in the loop (activedet.hitl)
def cmd_select_images(args) -> int:
    from .hitl.select_images import select_from_folder

    p = _params(args)
    _threads(p, args, "score")
    given = p if args.params else None
    summary = select_from_folder(args.images, args.labeled, args.model, args.strategy, args.budget, args.out,
                                 seed=args.seed, device=args.device, batch_size=args.batch_size,
                                 strategy_options=given["strategies"] if given else None,
                                 image_options=given["dataset"] if given else None, min_score=args.min_score,
                                 url_prefix=args.image_url_prefix)
    print(f"{args.out}: {summary['selected']} of {summary['unlabeled']} unlabeled images chosen by {args.strategy} "
          f"(selected.csv, selected.png, Label Studio and CVAT files); annotate them, then run:\n"
          f"  {summary['import_command']}")
    return 0


def cmd_import_labels(args) -> int:
    from .hitl.importer import import_labels

    s = import_labels(args.export, args.selected, args.labeled, args.format, args.imported_out,
                      args.regions, args.several_annotations)
    if s.get("annotation_seconds") is not None:
        print(f"{args.export}: annotation time measured by the tool: {s['annotation_seconds']:.1f} s")
    if "backup" in s:
        print(f"{s['written']}: +{s['images']} images, +{s['boxes']} boxes ({s['labeled_images']} labeled images); "
              f"the previous version is kept as {s['backup']}")
    else:
        print(f"{s['written']}: {s['images']} images with {s['boxes']} boxes imported; {args.labeled} unchanged")
    return 0


def cmd_simulate_annotator(args) -> int:
    from .hitl.simulate import simulate_annotator

    s = simulate_annotator(args.tasks, args.ground_truth, args.out, args.format)
    print(f"{args.out}: {s['tasks']} tasks answered with {s['boxes']} ground-truth boxes ({s['format']} export)")
    return 0


def cmd_export_selection(args) -> int:
    from .hitl.select_images import export_pipeline_selection

    _threads(_params(args), args, "score")
    s = export_pipeline_selection(args.selected, args.pool, args.images, args.model, args.labeled, args.out,
                                  args.imported, device=args.device, batch_size=args.batch_size,
                                  min_score=args.min_score, url_prefix=args.image_url_prefix)
    print(f"{args.out}: annotation tasks for {s['selected']} images; annotate them, then run:\n"
          f"  {s['import_command']}")
    return 0


def cmd_merge_imported(args) -> int:
    from .hitl.importer import merge_imported

    p = _params(args)
    labeled = _load(args.labeled, p)
    pool = _load(args.pool, p)
    imported = _load(args.imported, p)
    ids = _selected_ids(args.selected)
    merged = merge_imported(labeled, ids, pool, imported, args.budget, source=args.selected)
    write_json(args.out, merged.to_dict())
    print(f"{args.out}: {len(merged.images)} labeled images (+{len(ids)} with imported labels)")
    return 0


def cmd_paper_tables(args) -> int:
    from .paper_tables import TABLES, write_tables

    unknown = [t for t in args.tables if t not in TABLES]
    if unknown:
        raise InputError(f"unknown table(s) {', '.join(unknown)} (known: {', '.join(TABLES)})")
    for path in write_tables(args.curves, args.out_dir, args.tables):
        print(path)
    return 0


def build_parser() -> argparse.ArgumentParser:
    # The docstring's reST markup (double backticks) is for the API docs, not for a terminal.
    parser = argparse.ArgumentParser(prog="python -m activedet", description=__doc__.replace("``", ""),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    from .strategies import STRATEGIES

    strategy_help = (f"acquisition strategy: {', '.join(sorted(STRATEGIES))}, or a variant named under variants: "
                     f"in --params")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name, fn, help_):
        sp = sub.add_parser(name, help=help_, description=help_)
        sp.set_defaults(fn=fn)
        return sp

    def params_arg(sp):
        sp.add_argument("--params", default=None,
                        help="params.yaml path or inline JSON object (defaults from the schema fill the rest)")

    sp = add("make-dataset", cmd_make_dataset, "generate the embedded digit-scenes dataset (pool + test, PNG + COCO JSON)")
    params_arg(sp)
    sp.add_argument("--out", required=True, help="output folder (pool/, test/, pool.json, test.json)")

    sp = add("pretrain", cmd_pretrain, "pre-train the tiny backbone on glyph scenes (printed letters; reads no pool "
                                       "image or label) for detector.backbone_weights")
    params_arg(sp)
    sp.add_argument("--out", required=True, help="backbone file to write (stem, stages and FPN weights)")
    sp.add_argument("--detector", required=True, help="checkpoint of the whole letter detector to write")
    sp.add_argument("--summary", default=None, help="write a JSON training summary here")
    sp.add_argument("--threads", type=int, default=None, help=THREADS_HELP)

    sp = add("init-split", cmd_init_split, "draw the initial labeled set from the pool")
    params_arg(sp)
    sp.add_argument("--pool", required=True, help="COCO JSON of the pool")
    sp.add_argument("--size", type=int, required=True, help="number of images to label")
    sp.add_argument("--seed", type=int, required=True)
    sp.add_argument("--out", required=True, help="labeled set (COCO JSON)")

    sp = add("check-dataset", cmd_check_dataset,
             "decode every pool and test image and refuse the same image twice (by path or content)")
    params_arg(sp)
    sp.add_argument("--pool", required=True, help="COCO JSON of the pool")
    sp.add_argument("--pool-images", required=True, help="images folder of the pool")
    sp.add_argument("--test", required=True, help="COCO JSON of the test split")
    sp.add_argument("--test-images", required=True, help="images folder of the test split")
    sp.add_argument("--out", required=True, help="report (JSON: counts and content digests)")
    sp.add_argument("--threads", type=int, default=1, help="images decoded at once")

    sp = add("voc-to-coco", cmd_voc_to_coco,
             "read PASCAL VOC XML + ImageSets into the COCO JSON the pipeline reads (difficult objects flagged)")
    params_arg(sp)
    sp.add_argument("--root", required=True, help="VOCdevkit folder (holding VOC2007/, VOC2012/); the JSON's file "
                                                  "names are relative to it")
    sp.add_argument("--sets", required=True, help="image sets, comma-separated: VOC2007/trainval,VOC2012/trainval")
    sp.add_argument("--class-sets", nargs=2, action="append", metavar=("ROOT", "SETS"),
                    help="with dataset.classes null: also read class names from these image sets (repeatable; the "
                         "other split's, so pool and test get the same category ids)")
    sp.add_argument("--out", required=True, help="COCO JSON to write")

    sp = add("train", cmd_train, "train a detector on a labeled COCO JSON")
    params_arg(sp)
    sp.add_argument("--images", required=True, help="images folder the labeled file names are relative to")
    sp.add_argument("--labeled", required=True, help="labeled set (COCO JSON)")
    sp.add_argument("--out", required=True, help="checkpoint path (model.pt)")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--state", default=None, help="resumable training state (default: <out>.resume)")
    sp.add_argument("--summary", default=None, help="write a JSON training summary here")
    sp.add_argument("--backbone-weights", default=None,
                    help="pretrained backbone file (overrides detector.backbone_weights; the pipeline passes its "
                         "pretrain_backbone output)")
    sp.add_argument("--threads", type=int, default=None, help=THREADS_HELP)

    sp = add("train-miaod", cmd_train_miaod, "train an MI-AOD detector on labeled + unlabeled images (one cycle)")
    params_arg(sp)
    sp.add_argument("--images", required=True, help="images folder of the pool")
    sp.add_argument("--labeled", required=True, help="labeled set (COCO JSON)")
    sp.add_argument("--pool", required=True, help="COCO JSON of the pool (unlabeled images are drawn from it, without labels)")
    sp.add_argument("--strategy", default="miaod", help="miaod or a variant of it (params: variants)")
    sp.add_argument("--out", required=True, help="checkpoint path (model.pt)")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--state", default=None, help="resumable training state (default: <out>.resume)")
    sp.add_argument("--summary", default=None, help="write a JSON training summary here")
    sp.add_argument("--backbone-weights", default=None,
                    help="pretrained backbone file (overrides detector.backbone_weights; the pipeline passes its "
                         "pretrain_backbone output)")
    sp.add_argument("--threads", type=int, default=None, help=THREADS_HELP)

    sp = add("train-ll4al", cmd_train_ll4al,
             "train a detector with LL4AL's loss-prediction module on a labeled COCO JSON (one cycle)")
    params_arg(sp)
    sp.add_argument("--images", required=True, help="images folder the labeled file names are relative to")
    sp.add_argument("--labeled", required=True, help="labeled set (COCO JSON)")
    sp.add_argument("--strategy", default="ll4al", help="ll4al or a variant of it (params: variants)")
    sp.add_argument("--out", required=True, help="checkpoint path (model.pt)")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--state", default=None, help="resumable training state (default: <out>.resume)")
    sp.add_argument("--summary", default=None, help="write a JSON training summary here")
    sp.add_argument("--backbone-weights", default=None,
                    help="pretrained backbone file (overrides detector.backbone_weights; the pipeline passes its "
                         "pretrain_backbone output)")
    sp.add_argument("--threads", type=int, default=None, help=THREADS_HELP)

    sp = add("evaluate", cmd_evaluate, "evaluate a checkpoint: VOC mAP@0.5 (11-point and area) and COCO AP")
    sp.add_argument("--model", required=True)
    sp.add_argument("--images", required=True)
    sp.add_argument("--annotations", required=True, help="COCO JSON of the evaluation split")
    sp.add_argument("--out", required=True, help="metrics JSON")
    sp.add_argument("--predictions", default=None, help="also write the detections (COCO results JSON)")
    sp.add_argument("--device", default="auto")
    sp.add_argument("--batch-size", type=int, default=64)
    sp.add_argument("--threads", type=int, default=None, help=THREADS_HELP)

    sp = add("score", cmd_score, "score the pool with a strategy (scores.parquet)")
    params_arg(sp)
    sp.add_argument("--strategy", required=True, help=strategy_help)
    sp.add_argument("--model", default=None)
    sp.add_argument("--images", required=True)
    sp.add_argument("--pool", required=True)
    sp.add_argument("--labeled", required=True)
    sp.add_argument("--out", required=True)
    sp.add_argument("--timing", default=None, help="write the scoring seconds as JSON here")
    sp.add_argument("--batch-size", type=int, default=64)
    sp.add_argument("--threads", type=int, default=None, help=THREADS_HELP)

    sp = add("select", cmd_select, "pick the next batch from scores.parquet (selected.json)")
    params_arg(sp)
    sp.add_argument("--strategy", required=True, help=strategy_help)
    sp.add_argument("--scores", required=True)
    sp.add_argument("--budget", type=int, required=True)
    sp.add_argument("--seed", type=int, required=True)
    sp.add_argument("--cycle", type=int, required=True)
    sp.add_argument("--out", required=True)

    sp = add("merge", cmd_merge, "add the selected images' labels from the oracle pool (checks the invariants)")
    params_arg(sp)
    sp.add_argument("--labeled", required=True)
    sp.add_argument("--selected", required=True)
    sp.add_argument("--pool", required=True, help="COCO JSON with the pool's ground truth (the oracle)")
    sp.add_argument("--budget", type=int, required=True)
    sp.add_argument("--out", required=True)

    sp = add("paper-tables", cmd_paper_tables, "our versions of the papers' tables beside the published numbers")
    sp.add_argument("--curves", required=True, help="curves.csv of an experiment that ran the tables' variants")
    sp.add_argument("--out-dir", required=True)
    sp.add_argument("--tables", nargs="+", required=True, help="e.g. miaod_table1 miaod_table3 miaod_table4")

    sp = add("report", cmd_report, "learning curves, summary table, time table and figure of an experiment")
    params_arg(sp)
    sp.add_argument("--experiment-dir", required=True, help="results/<experiment>")
    sp.add_argument("--pool", required=True, help="COCO JSON of the pool (for labeled fractions)")
    sp.add_argument("--out-dir", default=None, help="where curves.csv etc. go (default: the experiment dir)")
    sp.add_argument("--metrics", default=None, help="also write each strategy's ALC here (a narrow metrics JSON for "
                                                    "dvc metrics show; the full table is summary.csv)")
    sp.add_argument("--stopping", action="store_true",
                    help="also the stopping table and figure (needs every cycle's stop_predictions.json)")

    sp = add("stop-set", cmd_stop_set, "the stopping signal's stop set: unlabeled pool images fixed per seed")
    params_arg(sp)
    sp.add_argument("--pool", required=True, help="COCO JSON of the pool")
    sp.add_argument("--labeled", required=True, help="the seed's initial labeled set (left out of the stop set)")
    sp.add_argument("--size", type=int, required=True, help="images in the stop set (stopping.stop_set_size)")
    sp.add_argument("--seed", type=int, required=True)
    sp.add_argument("--out", required=True)

    sp = add("predict-stop-set", cmd_predict_stop_set, "a cycle's detections on the stop set (COCO results JSON)")
    sp.add_argument("--model", required=True)
    sp.add_argument("--images", required=True, help="pool images folder")
    sp.add_argument("--pool", required=True, help="COCO JSON of the pool (image records)")
    sp.add_argument("--stop-set", required=True, help="stop_set.json of the seed")
    sp.add_argument("--out", required=True)
    sp.add_argument("--device", default="auto")
    sp.add_argument("--batch-size", type=int, default=64)
    sp.add_argument("--threads", type=int, default=None, help=THREADS_HELP)

    sp = add("selection-sheet", cmd_selection_sheet, "contact sheet of a cycle's selected images with the model's boxes")
    sp.add_argument("--model", required=True, help="the model that scored the pool at this cycle")
    sp.add_argument("--selected", required=True, help="selected.json of the cycle")
    sp.add_argument("--pool", required=True, help="COCO JSON of the pool (image records)")
    sp.add_argument("--images", required=True, help="pool images folder")
    sp.add_argument("--out", required=True, help="PNG to write")
    sp.add_argument("--title", default="selected images")
    sp.add_argument("--min-score", type=float, default=0.3, help="boxes below this score are not drawn (as the annotation sheet)")
    sp.add_argument("--device", default="auto")
    sp.add_argument("--batch-size", type=int, default=64)
    sp.add_argument("--threads", type=int, default=None, help=THREADS_HELP)

    sp = add("resolve-params", cmd_resolve_params, "the params after validation with every default filled in (YAML)")
    params_arg(sp)
    sp.add_argument("--out", required=True)
    # human in the loop: choose images of your own, export them for annotation, import the labels
    from .hitl.boxes import DEFAULT_MIN_SCORE
    from .hitl.label_studio import DEFAULT_URL_PREFIX

    def hitl_export_args(sp):
        sp.add_argument("--device", default="auto")
        sp.add_argument("--batch-size", type=int, default=64)
        sp.add_argument("--threads", type=int, default=None, help=THREADS_HELP)
        sp.add_argument("--min-score", type=float, default=DEFAULT_MIN_SCORE,
                        help="detections below this score are not pre-annotations (Label Studio, CVAT, sheet); "
                             "predictions.json keeps all")
        sp.add_argument("--image-url-prefix", default=DEFAULT_URL_PREFIX,
                        help="Label Studio data.image = prefix + image path (default: Label Studio's local files "
                             "serving; e.g. http://host/images/ for a web server)")

    sp = add("select-images", cmd_select_images,
             "choose which images of a folder to annotate next and export them for Label Studio / CVAT")
    params_arg(sp)
    sp.add_argument("--images", required=True, help="folder of images (searched recursively); labeled file names "
                                                    "are relative to it")
    sp.add_argument("--labeled", required=True, help="labeled set (COCO JSON); the folder's other images are scored")
    sp.add_argument("--model", required=True, help="checkpoint trained on the labeled set")
    sp.add_argument("--strategy", required=True, help=strategy_help)
    sp.add_argument("--budget", type=int, required=True, help="images to choose")
    sp.add_argument("--out", required=True, help="output folder (selected.csv, label_studio_tasks.json, "
                                                 "label_studio_config.xml, cvat_annotations.xml, predictions.json, "
                                                 "selected.png, README.txt)")
    sp.add_argument("--seed", type=int, default=0, help="randomness of the selection (random strategy)")
    hitl_export_args(sp)

    sp = add("import-labels", cmd_import_labels,
             "check annotators' labels against the selection and merge them into the labeled COCO file")
    sp.add_argument("--export", required=True, help="Label Studio JSON export, CVAT for images 1.1 XML or COCO JSON")
    sp.add_argument("--selected", required=True, help="selected.csv of the selection")
    sp.add_argument("--labeled", required=True, help="labeled set (COCO JSON); merged in place, the previous "
                                                     "version kept as <stem>.v<N>.json")
    sp.add_argument("--format", default="auto", choices=["auto", "label_studio", "cvat", "coco"])
    sp.add_argument("--regions", default="enclosing_box", choices=["enclosing_box", "skip"],
                    help="polygons, masks, brushes, ellipses and rotated boxes: import their enclosing boxes "
                         "(default) or skip them with a warning; points, polylines, skeletons and tags are always "
                         "skipped with a warning")
    sp.add_argument("--several-annotations", default="ground_truth_or_latest",
                    choices=["ground_truth_or_latest", "refuse"],
                    help="Label Studio tasks submitted by several annotators: take the one marked ground truth, "
                         "else the latest (default), or refuse unless exactly one is marked")
    sp.add_argument("--imported-out", default=None,
                    help="write only the imported labels (COCO JSON) here and leave --labeled unchanged "
                         "(the pipeline's human mode: {run}/imported_labels.json)")

    sp = add("simulate-annotator", cmd_simulate_annotator,
             "answer Label Studio tasks with ground truth, in an annotation tool's export format")
    sp.add_argument("--tasks", required=True, help="label_studio_tasks.json of a selection")
    sp.add_argument("--ground-truth", required=True, help="COCO JSON with the true boxes (e.g. the pool)")
    sp.add_argument("--out", required=True, help="the export to write")
    sp.add_argument("--format", default="label_studio", choices=["label_studio", "cvat", "coco"])

    sp = add("export-selection", cmd_export_selection,
             "annotation tasks (Label Studio, CVAT, COCO, contact sheet) for a pipeline cycle's selected.json")
    sp.add_argument("--selected", required=True, help="selected.json of the cycle")
    sp.add_argument("--pool", required=True, help="COCO JSON of the pool (image records)")
    sp.add_argument("--images", required=True, help="pool images folder")
    sp.add_argument("--model", required=True, help="the cycle's checkpoint (pre-annotations)")
    sp.add_argument("--labeled", required=True, help="the labeled set the cycle trained on")
    sp.add_argument("--imported", required=True, help="where the import command shall write the labels")
    sp.add_argument("--out", required=True, help="output folder")
    hitl_export_args(sp)

    sp = add("merge-imported", cmd_merge_imported,
             "add the selected images with imported labels (human mode; checks the merge invariants)")
    params_arg(sp)
    sp.add_argument("--labeled", required=True)
    sp.add_argument("--selected", required=True)
    sp.add_argument("--pool", required=True, help="COCO JSON of the pool (the images labeled sets come from)")
    sp.add_argument("--imported", required=True, help="imported labels (import-labels --imported-out)")
    sp.add_argument("--budget", type=int, required=True)
    sp.add_argument("--out", required=True)

    # MGRAL: lookup-record, lookup-table, train-agent, mgral-time, mgral-compute (activedet/mgral/cli.py)
    from .mgral.cli import add_commands as add_mgral_commands

    add_mgral_commands(add, params_arg)

    # Paper figures and tables: paper-fig5, paper-table5, paper-fig6, ..., paper-index (activedet/paper_reports/cli.py)
    from .paper_reports.cli import add_commands as add_paper_commands

    add_paper_commands(add, params_arg)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except InputError as e:
        print("\n".join(f"error: {line}" for line in str(e).splitlines()), file=sys.stderr)
        return 2
    except OSError as e:  # a user's path that is missing, a folder, or not readable: name it, no traceback
        where = f"{e.filename}: " if e.filename else ""
        print(f"error: {where}{e.strerror or e}", file=sys.stderr)
        return 2
