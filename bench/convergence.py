"""Convergence sweep of the per-cycle training recipe (the benchmark regime's schedule).

    python -m bench.convergence --fractions 0.05 0.25 --seeds 0 1 --factors 1 2 \\
        --out docs/results/convergence/sweep.csv

For each labeled fraction, seed and factor it trains the plain detector on a random labeled set of
that size (the seed's ``initial_split``, as the ``random`` strategy's cycle) with the recipe of
``--params`` (section ``train``, the pretrained backbone of ``detector.backbone_weights``), its
iterations multiplied by the factor (learning-rate drops at the same fractions), and evaluates it on the
test split. A recipe has converged when doubling its iterations moves mAP@0.5 by at most 0.01.
``--reference`` adds the 100%-labeled detector (the ceiling of every learning curve).

The digit scenes are generated into ``--data`` when it holds none; with ``backbone_weights:
glyph_scenes`` the backbone is pre-trained into ``--scratch`` unless ``--backbone`` names the file.
Rows are appended to ``--out`` (created with its header), so several processes can share a sweep; an
``--out`` whose header differs from the rows' is refused (``error: <file>: ...``, exit 2).
``--frozen-stages`` and ``--lr`` override ``detector.frozen_stages`` and ``train.lr``; every row records both.
"""
from __future__ import annotations

import argparse
import copy
import csv
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = ["backbone", "frozen_stages", "lr", "fraction", "n_labeled", "seed", "factor", "iterations", "epochs", "map50",
           "map50_area", "coco_ap", "coco_ap50", "train_seconds", "threads"]


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.convergence", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default=str(ROOT / "params.yaml"))
    ap.add_argument("--fractions", type=float, nargs="+", default=[0.05, 0.25])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--factors", type=float, nargs="+", default=[1.0, 2.0],
                    help="multiples of the recipe's iterations (1 = the recipe)")
    ap.add_argument("--reference", action="store_true", help="also train on the whole pool (factor 1)")
    ap.add_argument("--data", default=str(ROOT / "data" / "digit_scenes"), help="digit-scenes folder")
    ap.add_argument("--backbone", default=None,
                    help="pretrained backbone file (default: pre-train one); 'none': random initialisation")
    ap.add_argument("--frozen-stages", type=int, default=None, help="override detector.frozen_stages")
    ap.add_argument("--lr", type=float, default=None, help="override train.lr (the base learning rate)")
    ap.add_argument("--scratch", default=str(ROOT / "results" / "convergence"), help="models and backbone")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", required=True, help="CSV to append rows to")
    return ap.parse_args(argv)


def scaled_recipe(params: dict, n_images: int, factor: float) -> dict:
    """``params`` with the iterations the recipe gives ``n_images`` multiplied by ``factor``."""
    from activedet.engine.train import total_iterations

    p = copy.deepcopy(params)
    it = max(1, round(total_iterations(n_images, p["train"]) * factor))
    p["train"].update(min_iterations=it, max_iterations=it, epochs=1e-9)
    return p


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    from activedet import params as P
    from activedet.data.coco import load_coco
    from activedet.data.dataset import DetectionDataset
    from activedet.data.digit_scenes import generate
    from activedet.data.splits import initial_split
    from activedet.engine.predict import predict
    from activedet.engine.pretrain import pretrain_backbone
    from activedet.engine.train import load_model, train_detector
    from activedet.evaluation import evaluate_detections

    torch.set_num_threads(args.threads)
    params = P.load(args.params)
    params["num_threads"] = args.threads
    data, scratch = Path(args.data), Path(args.scratch)
    scratch.mkdir(parents=True, exist_ok=True)
    if not (data / "pool.json").is_file():
        generate(data, **params["dataset"]["digit_scenes"])
    if args.frozen_stages is not None:
        params["detector"]["frozen_stages"] = args.frozen_stages
    if args.lr is not None:
        params["train"]["lr"] = args.lr
    if args.backbone == "none":
        params["detector"]["backbone_weights"] = None
    elif params["detector"]["backbone_weights"] == "glyph_scenes":
        backbone = Path(args.backbone) if args.backbone else scratch / "backbone.pt"
        if not backbone.is_file():
            pretrain_backbone(params, backbone, scratch / "glyph_detector.pt")
        params["detector"]["backbone_weights"] = str(backbone)
    ds_cfg = params["dataset"]
    pool = load_coco(data / "pool.json")
    test = load_coco(data / "test.json")
    cats = sorted(pool.categories, key=lambda c: c["id"])
    test_ds = DetectionDataset(test, data / "test" / "images", ds_cfg["input_size"], ds_cfg["keep_ratio"], True, cats)
    runs = [(f, s, k) for f in args.fractions for s in args.seeds for k in args.factors]
    if args.reference:
        runs.append((1.0, args.seeds[0], 1.0))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.is_file():  # appending rows under another header would shift every value into the wrong column
        with open(out, newline="") as f:
            header = next(csv.reader(f), [])
        if header != COLUMNS:
            print(f"error: {out}: its header is {','.join(header)}, not {','.join(COLUMNS)}", file=sys.stderr)
            return 2
    for fraction, seed, factor in runs:
        n = len(pool.images) if fraction >= 1 else round(fraction * len(pool.images))
        labeled = pool if n == len(pool.images) else initial_split(pool, n, seed)
        ds = DetectionDataset(labeled, data / "pool" / "images", ds_cfg["input_size"], ds_cfg["keep_ratio"], True, cats)
        p = scaled_recipe(params, n, factor)
        model_path = scratch / (f"f{fraction}_s{seed}_x{factor}_fz{params['detector']['frozen_stages']}"
                                f"_lr{params['train']['lr']}.pt")
        t0 = time.perf_counter()
        summary = train_detector(p, ds, model_path, seed, log=lambda m: None)
        seconds = time.perf_counter() - t0
        model, _ = load_model(model_path)
        with torch.no_grad():
            m = evaluate_detections(test.to_dict(), predict(model, test_ds, torch.device("cpu"), 64))
        it = summary["iterations"]
        row = {"backbone": "pretrained" if params["detector"]["backbone_weights"] else "random init",
               "frozen_stages": params["detector"]["frozen_stages"], "lr": params["train"]["lr"], "fraction": fraction, "n_labeled": n, "seed": seed, "factor": factor, "iterations": it,
               "epochs": round(it * p["train"]["batch_size"] / n, 1), "map50": round(m["map50"], 4),
               "map50_area": round(m["map50_area"], 4), "coco_ap": round(m["coco_ap"], 4),
               "coco_ap50": round(m["coco_ap50"], 4), "train_seconds": round(seconds, 1), "threads": args.threads}
        new = not out.is_file()
        with open(out, "a", newline="") as f:
            w = csv.DictWriter(f, COLUMNS, lineterminator="\n")
            if new:
                w.writeheader()
            w.writerow(row)
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
