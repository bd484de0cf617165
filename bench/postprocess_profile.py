"""Where a detection-based scoring pass's time goes: the forward against each op of the postprocess.

    python -m bench.postprocess_profile results/<experiment> --strategy entropy --cycles 1 4 --out profile.csv

For each model (``runs/<strategy>/seed<seed>/cycle<c>/model.pt``) and the pool's first ``--batches`` batches
of 64 images, the forward of the branches a scoring pass reads (``cls``, ``reg``) and ``model.postprocess``
are timed, and the postprocess is run again under ``torch.profiler`` for its self CPU time per op. Rows per
model: ``forward`` and ``postprocess`` (wall ms per batch, median over the batches), then each op of the
postprocess (``aten::nonzero``, ``torchvision::nms``, ...; self CPU ms per batch, calls per batch). Columns
``candidates_per_image`` (class scores above the score threshold) and ``detections_per_image`` say how much
work the model leaves to the postprocess; ``bound`` = forward / (forward + postprocess) is the ratio to a
plain forward that a scoring pass cannot exceed while it runs this postprocess (the strategy's own work
comes on top). One thread, as the bench.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import pandas as pd

from .common import experiment_parser, run_tool

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv=None) -> argparse.Namespace:
    ap = experiment_parser("python -m bench.postprocess_profile", __doc__, strategy="entropy")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cycles", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--images", default=str(ROOT / "data" / "digit_scenes" / "pool" / "images"))
    ap.add_argument("--annotations", default=str(ROOT / "data" / "digit_scenes" / "pool.json"))
    ap.add_argument("--batches", type=int, default=8, help="batches of 64 pool images")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    return run_tool(run, parse_args(argv))


def profile_model(model, batches: list) -> list[dict]:
    """Rows ``forward``, ``postprocess`` and one per postprocess op for ``batches`` ([B, 3, H, W] images);
    candidates are the class scores above the model's own score threshold."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    score_threshold = model.postprocess_cfg["score_threshold"]
    fwd, post, outputs = [], [], []
    with torch.no_grad():
        for images in batches:
            t0 = time.perf_counter()
            out = model(images, branches=("cls", "reg"))
            t1 = time.perf_counter()
            args = (out["cls"], out["reg"], model.anchors(images), tuple(images.shape[-2:]))
            t2 = time.perf_counter()
            dets = model.postprocess(*args)
            t3 = time.perf_counter()
            fwd.append(t1 - t0)
            post.append(t3 - t2)
            outputs.append((args, sum(len(d["scores"]) for d in dets), int((out["cls"].sigmoid() > score_threshold).sum())))
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for args, _, _ in outputs:
                model.postprocess(*args)
    n_images = sum(len(b) for b in batches)
    shared = {"candidates_per_image": sum(o[2] for o in outputs) / n_images,
              "detections_per_image": sum(o[1] for o in outputs) / n_images}
    f, p = statistics.median(fwd) * 1e3, statistics.median(post) * 1e3
    rows = [{"part": "forward", "ms_per_batch": f, "calls_per_batch": 1, **shared},
            {"part": "postprocess", "ms_per_batch": p, "calls_per_batch": 1, **shared}]
    ops = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    for e in ops:
        ms = e.self_cpu_time_total / 1e3 / len(batches)
        if ms >= 0.05:
            rows.append({"part": e.key, "ms_per_batch": ms, "calls_per_batch": e.count / len(batches), **shared})
    for r in rows:
        r["bound"] = f / (f + p)
    return rows


def run(args) -> int:
    import torch

    from activedet.checkpoint import load_model
    from activedet.data.coco import load_coco
    from activedet.data.dataset import detector_dataset
    from activedet.engine.predict import iterate_batches
    from activedet.io import InputError, atomic_path

    torch.set_num_threads(args.threads)
    exp = Path(args.experiment)
    pool = load_coco(args.annotations)
    rows = []
    for cycle in args.cycles:
        path = exp / "runs" / args.strategy / f"seed{args.seed}" / f"cycle{cycle}" / "model.pt"
        if not path.is_file():
            raise InputError(f"{path}: no such model (a finished run of strategy {args.strategy})")
        model, ckpt = load_model(path)
        ds = detector_dataset(ckpt["params"], pool, args.images, ckpt["categories"])
        batches = [images for _, (images, _) in zip(range(args.batches), iterate_batches(ds, 64))]
        model_rows = profile_model(model, batches)
        rows += [{"model": f"{args.strategy} seed{args.seed} cycle{cycle}", **r} for r in model_rows]
        print(f"{path}: forward {model_rows[0]['ms_per_batch']:.1f} ms, postprocess {model_rows[1]['ms_per_batch']:.1f} ms"
              f" per batch of 64", flush=True)
    table = pd.DataFrame(rows)
    with atomic_path(args.out) as tmp:
        table.to_csv(tmp, index=False, float_format="%.4g")
    print(table[table["part"].isin(["forward", "postprocess"])].to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
