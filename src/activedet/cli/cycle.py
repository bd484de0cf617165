"""One cycle's steps after training: score, select, merge (and merge-imported), the stopping signal's
stop-set / predict-stop-set, and the selection's contact sheet. The loop's rules are in :mod:`activedet.cycle`."""
from __future__ import annotations

import time
from pathlib import Path

from ..io import read_json, write_json
from .common import (configure_images, load_coco, load_params, params_arg, predict_args, set_threads, strategy_help,
                     threads_arg)


def cmd_score(args) -> int:
    from ..cycle import score_pool
    from ..data.dataset import detector_dataset
    from ..device import resolve_device
    from ..io import atomic_path
    from ..strategies import build_strategy

    t0 = time.perf_counter()
    p = load_params(args)
    set_threads(p, args, "score")
    configure_images(p)
    strategy = build_strategy(args.strategy, p)
    pool, labeled = load_coco(args.pool, p), load_coco(args.labeled, p)
    scores, seconds = score_pool(strategy, pool, labeled, args.images, args.model, resolve_device(p["device"]),
                                 args.batch_size, lambda coco, cats: detector_dataset(p, coco, args.images, cats))
    with atomic_path(args.out) as tmp:
        scores.to_parquet(tmp, index=False)
    print(f"{args.out}: scored {int((~scores['labeled']).sum())} unlabeled images in {seconds:.2f}s "
          f"(total {time.perf_counter() - t0:.2f}s)")
    if args.timing:
        write_json(args.timing, {"score_seconds": seconds, "total_seconds": time.perf_counter() - t0})
    return 0


def cmd_select(args) -> int:
    from ..cycle import select_batch
    from ..io import read_parquet

    p = load_params(args)
    scores_path = Path(args.scores)
    scores = read_parquet(scores_path, "scores table", ["image_id", "score", "labeled"], " (the score step writes them)")
    selection = select_batch(p, args.strategy, scores, args.budget, args.seed, args.cycle, scores_path)
    selection.write(args.out)
    print(f"{args.out}: selected {len(selection)} images with {args.strategy}")
    return 0


def cmd_merge(args) -> int:
    from ..cycle import read_selected_ids
    from ..data.splits import merge_labels

    p = load_params(args)
    labeled, pool = load_coco(args.labeled, p), load_coco(args.pool, p)
    ids = read_selected_ids(args.selected)
    merged = merge_labels(labeled, ids, pool, args.budget, source=args.selected)
    write_json(args.out, merged.to_dict())
    print(f"{args.out}: {len(merged.images)} labeled images (+{len(ids)})")
    return 0


def cmd_merge_imported(args) -> int:
    from ..cycle import read_selected_ids
    from ..hitl.importer import merge_imported

    p = load_params(args)
    labeled, pool, imported = load_coco(args.labeled, p), load_coco(args.pool, p), load_coco(args.imported, p)
    ids = read_selected_ids(args.selected)
    merged = merge_imported(labeled, ids, pool, imported, args.budget, source=args.selected)
    write_json(args.out, merged.to_dict())
    print(f"{args.out}: {len(merged.images)} labeled images (+{len(ids)} with imported labels)")
    return 0


def cmd_stop_set(args) -> int:
    from ..stopping import stop_set_ids

    p = load_params(args)
    pool, labeled = load_coco(args.pool, p), load_coco(args.labeled, p)
    ids = stop_set_ids(pool.image_ids, labeled.image_ids, args.size, args.seed)
    write_json(args.out, {"seed": args.seed, "image_ids": ids,
                          "description": "stop set: unlabeled pool images whose predictions the stopping signal "
                                         "compares from cycle to cycle (never their labels)"})
    print(f"{args.out}: {len(ids)} stop-set images")
    return 0


def _predict_pool_subset(args, image_ids):
    """``--model``'s detections on the pool images ``image_ids``: (COCO results, checkpoint, the subset)."""
    import torch

    from ..checkpoint import load_model
    from ..data.dataset import detector_dataset
    from ..device import resolve_device
    from ..engine.predict import predict

    device = resolve_device(args.device)
    model, ckpt = load_model(args.model, device)
    p = ckpt["params"]
    set_threads(p, args)
    configure_images(p)
    subset = load_coco(args.pool, p).subset(image_ids)
    ds = detector_dataset(dict(p, dataset=dict(p["dataset"], cache_images=False)), subset, args.images,
                          ckpt["categories"])
    with torch.no_grad():
        return predict(model, ds, device, args.batch_size), ckpt, subset


def cmd_predict_stop_set(args) -> int:
    ids = read_json(args.stop_set)["image_ids"]
    dets, _, _ = _predict_pool_subset(args, ids)
    write_json(args.out, dets, indent=None)
    print(f"{args.out}: {len(dets)} detections on {len(ids)} stop-set images")
    return 0


def cmd_selection_sheet(args) -> int:
    from ..cycle import Selection
    from ..hitl.boxes import SelectedImage
    from ..hitl.export import boxes_by_image
    from ..hitl.sheet import contact_sheet

    sel = Selection.read(args.selected)
    dets, ckpt, chosen = _predict_pool_subset(args, sel.image_ids)
    by_id = {im["id"]: im for im in chosen.images}
    selection = [SelectedImage(rank, by_id[i]["file_name"], i, int(round(by_id[i]["width"])),
                               int(round(by_id[i]["height"])), score)
                 for rank, (i, score) in enumerate(zip(sel.image_ids, sel.scores), start=1)]
    boxes = boxes_by_image(dets, selection, ckpt["categories"], args.min_score)
    contact_sheet(args.out, args.images, selection, boxes, [c["name"] for c in ckpt["categories"]], args.title)
    print(f"{args.out}: {len(selection)} selected images with the model's boxes")
    return 0


def register(add) -> None:
    sp = add("score", cmd_score, "score the pool with a strategy (scores.parquet)")
    params_arg(sp)
    sp.add_argument("--strategy", required=True, help=strategy_help())
    sp.add_argument("--model", default=None)
    sp.add_argument("--images", required=True)
    sp.add_argument("--pool", required=True)
    sp.add_argument("--labeled", required=True)
    sp.add_argument("--out", required=True)
    sp.add_argument("--timing", default=None, help="write the scoring seconds as JSON here")
    sp.add_argument("--batch-size", type=int, default=64)
    threads_arg(sp)

    sp = add("select", cmd_select, "pick the next batch from scores.parquet (selected.json)")
    params_arg(sp)
    sp.add_argument("--strategy", required=True, help=strategy_help())
    sp.add_argument("--scores", required=True)
    sp.add_argument("--budget", type=int, required=True)
    sp.add_argument("--seed", type=int, required=True)
    sp.add_argument("--cycle", type=int, required=True)
    sp.add_argument("--out", required=True)

    def merge_args(sp, pool_help):
        params_arg(sp)
        sp.add_argument("--labeled", required=True)
        sp.add_argument("--selected", required=True)
        sp.add_argument("--pool", required=True, help=pool_help)

    sp = add("merge", cmd_merge, "add the selected images' labels from the oracle pool (checks the invariants)")
    merge_args(sp, "COCO JSON with the pool's ground truth (the oracle)")
    sp.add_argument("--budget", type=int, required=True)
    sp.add_argument("--out", required=True)

    sp = add("merge-imported", cmd_merge_imported,
             "add the selected images with imported labels (human mode; checks the merge invariants)")
    merge_args(sp, "COCO JSON of the pool (the images labeled sets come from)")
    sp.add_argument("--imported", required=True, help="imported labels (import-labels --imported-out)")
    sp.add_argument("--budget", type=int, required=True)
    sp.add_argument("--out", required=True)

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
    predict_args(sp)

    sp = add("selection-sheet", cmd_selection_sheet, "contact sheet of a cycle's selected images with the model's boxes")
    sp.add_argument("--model", required=True, help="the model that scored the pool at this cycle")
    sp.add_argument("--selected", required=True, help="selected.json of the cycle")
    sp.add_argument("--pool", required=True, help="COCO JSON of the pool (image records)")
    sp.add_argument("--images", required=True, help="pool images folder")
    sp.add_argument("--out", required=True, help="PNG to write")
    sp.add_argument("--title", default="selected images")
    sp.add_argument("--min-score", type=float, default=0.3, help="boxes below this score are not drawn (as the annotation sheet)")
    predict_args(sp)
