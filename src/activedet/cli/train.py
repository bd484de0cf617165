"""Training and evaluation steps: train (every trainer: the plain detector, MI-AOD, LL4AL), evaluate."""
from __future__ import annotations

import json
import time

from ..io import InputError, write_json
from .common import (configure_images, load_coco, load_params, predict_args, set_threads, strategy_help,
                     training_args)

# The method-named spellings of `train --strategy <method>` (kept for scripts written before the one step).
METHOD_COMMANDS = {"train-miaod": ("miaod", "MI-AOD"), "train-ll4al": ("ll4al", "LL4AL")}


def cmd_train(args) -> int:
    """Train a cycle's model with the trainer of ``--strategy`` (none: the plain detector)."""
    from ..engine.trainers import TRAINERS, TrainJob
    from ..strategies import STRATEGIES, resolve

    p = load_params(args)
    set_threads(p, args)
    configure_images(p)
    base, options = resolve(args.strategy, p) if args.strategy else (None, {})
    if args.command in METHOD_COMMANDS and base != METHOD_COMMANDS[args.command][0]:
        raise InputError(f"{args.command}: --strategy {args.strategy} is not {METHOD_COMMANDS[args.command][1]} "
                         f"or one of its variants")
    trainer = STRATEGIES[base].trainer if base else "detector"
    labeled = load_coco(args.labeled, p)
    if not labeled.annotations:
        raise InputError(f"{args.labeled}: the labeled set has no boxes at all; nothing to train on")
    pool = load_coco(args.pool, p) if args.pool and trainer == "miaod" else None
    job = TrainJob(p, options, labeled, args.images, pool, args.out, args.seed, args.state or f"{args.out}.resume")
    summary = TRAINERS[trainer](job)
    if args.summary:
        write_json(args.summary, summary)
    print(json.dumps({k: v for k, v in summary.items() if k != "phases"}))
    return 0


def cmd_evaluate(args) -> int:
    import torch

    from ..checkpoint import load_model
    from ..data.dataset import detector_dataset
    from ..device import resolve_device
    from ..engine.predict import predict
    from ..evaluation import evaluate_detections

    t0 = time.perf_counter()
    device = resolve_device(args.device)
    model, ckpt = load_model(args.model, device)
    p = ckpt["params"]
    set_threads(p, args, "score")
    configure_images(p)  # read the test images as the model's training images were read
    test = load_coco(args.annotations, p)
    ds = detector_dataset(p, test, args.images, ckpt["categories"])
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


def register(add) -> None:
    sp = add("train", cmd_train, "train a cycle's model on a labeled COCO JSON with its strategy's trainer: the plain "
                                 "detector (default), MI-AOD (labeled + unlabeled images) or LL4AL")
    training_args(sp)
    sp.add_argument("--strategy", default=None,
                    help=f"whose trainer ({strategy_help()}); default: the plain detector")
    sp.add_argument("--pool", default=None, help="COCO JSON of the pool (MI-AOD draws its unlabeled images from it, "
                                                 "without labels)")
    for name, (method, label) in METHOD_COMMANDS.items():
        sp = add(name, cmd_train, f"train --strategy {method}: the {label} model of one cycle")
        training_args(sp)
        sp.add_argument("--strategy", default=method, help=f"{method} or a variant of it (params: variants)")
        sp.add_argument("--pool", required=method == "miaod", default=None,
                        help="COCO JSON of the pool (unlabeled images are drawn from it, without labels)")

    sp = add("evaluate", cmd_evaluate, "evaluate a checkpoint: VOC mAP@0.5 (11-point and area) and COCO AP")
    sp.add_argument("--model", required=True)
    sp.add_argument("--images", required=True)
    sp.add_argument("--annotations", required=True, help="COCO JSON of the evaluation split")
    sp.add_argument("--out", required=True, help="metrics JSON")
    sp.add_argument("--predictions", default=None, help="also write the detections (COCO results JSON)")
    predict_args(sp)
