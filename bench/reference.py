"""The "100% labeled" and "random 10%" references on the default pool (not part of ``all``: minutes).

Both train the plain detector with the run's recipe (``--epochs`` passes) and report mAP@0.5 (VOC07),
COCO AP and the training time, the ceiling and the floor every active-learning curve sits between.
"""
from __future__ import annotations

import copy
import tempfile
from pathlib import Path

from .common import Context

SECTION = "reference"


def run(ctx: Context, epochs: float, fraction: float, seed: int = 0) -> None:
    from activedet.data.splits import initial_split
    from activedet.engine.predict import predict
    from activedet.engine.train import load_model, train_detector
    from activedet.evaluation import evaluate_detections

    from .data import bench_params, dataset, scenes

    params = bench_params(ctx, epochs=epochs)
    if ctx.quick:
        params = bench_params(ctx, epochs=epochs, max_iterations=4)
    cfg = ctx.params["dataset"]["digit_scenes"]
    n_pool, n_test = (96, 24) if ctx.quick else (cfg["n_pool"], cfg["n_test"])
    data = scenes(ctx, n_pool, n_test)
    pool, test = data["pool"], data["test"]
    test_ds = dataset(ctx, test, data["test_images"])
    for label, coco in (("100%", pool), (f"random {fraction:.0%}", initial_split(pool, round(fraction * len(pool.images)), seed))):
        ds = dataset(ctx, coco, data["pool_images"])
        with tempfile.TemporaryDirectory(dir=ctx.scratch) as tmp:
            summary = train_detector(copy.deepcopy(params), ds, Path(tmp) / "model.pt", seed, log=lambda m: None)
            model, _ = load_model(Path(tmp) / "model.pt", ctx.device)
        metrics = evaluate_detections(test.to_dict(), predict(model, test_ds, ctx.device))
        note = f"{len(coco.images)} images, {summary['iterations']} iterations, {epochs} epochs"
        ctx.add(SECTION, f"{label} labeled: mAP@0.5 (VOC07)", metrics["map50"], "", note=note)
        ctx.add(SECTION, f"{label} labeled: COCO AP", metrics["coco_ap"], "", note=note)
        ctx.add(SECTION, f"{label} labeled: training time", summary["seconds"], "s",
                note=f"{summary['images_per_second']:.0f} images/s")
