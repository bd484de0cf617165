"""Benchmarks that print figures (never timed unit tests).

    python -m bench throughput   detector training images/s vs torchvision's RetinaNet, FLOPs, machine limit
    python -m bench reference    the "100% labeled" and "random 10%" references on the default pool
    python -m bench all          both

Rows are appended to results/bench/bench.csv (one row per figure, with its spread where repeated).
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections import OrderedDict
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "results" / "bench"


def record(rows: list[dict], name: str, value: float, unit: str, spread: float | None = None, note: str = "") -> None:
    rows.append({"benchmark": name, "value": value, "unit": unit, "spread": spread, "note": note,
                 "machine": f"{platform.machine()} {torch.get_num_threads()} threads "
                            f"{'cuda' if torch.cuda.is_available() else 'cpu'}"})
    spread_s = f" ± {spread:.3g}" if spread is not None else ""
    print(f"{name:55s} {value:12.4g}{spread_s} {unit}  {note}", flush=True)


def write_rows(rows: list[dict]) -> None:
    import pandas as pd

    from activedet.io import atomic_path

    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "bench.csv"
    df = pd.DataFrame(rows)
    if path.is_file():
        old = pd.read_csv(path)
        df = pd.concat([old[~old["benchmark"].isin(df["benchmark"])], df], ignore_index=True)
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)
    print(f"wrote {path}")


def median_spread(values: list[float]) -> tuple[float, float]:
    med = statistics.median(values)
    return med, (max(values) - min(values)) / 2


def dense_limit(device: torch.device, repeats: int = 5) -> tuple[float, float]:
    """Measured FLOP/s of a large matmul and of a representative 3x3 convolution."""
    a = torch.randn(1024, 1024, device=device)
    b = torch.randn(1024, 1024, device=device)
    conv = torch.nn.Conv2d(64, 64, 3, padding=1).to(device)
    x = torch.randn(32, 64, 32, 32, device=device)
    mm, cv = [], []
    with torch.no_grad():
        for _ in range(repeats):
            t = time.perf_counter()
            for _ in range(10):
                a @ b
            mm.append(10 * 2 * 1024**3 / (time.perf_counter() - t))
            t = time.perf_counter()
            for _ in range(10):
                conv(x)
            cv.append(10 * 2 * 32 * 64 * 64 * 9 * 32 * 32 / (time.perf_counter() - t))
    return statistics.median(mm), statistics.median(cv)


def training_flops(step, batch: int) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops() / batch


def bench_throughput(rows: list[dict], batch: int = 16, iters: int = 30, repeats: int = 3) -> None:
    """Same backbone (tiny), same 4x64 head, same 64 px images and batch: ours vs torchvision's RetinaNet."""
    from torchvision.models.detection import RetinaNet as TVRetinaNet

    from activedet import params as P
    from activedet.models import build_model
    from activedet.models.losses import detection_loss

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    # torchvision's RetinaNetHead: 4 convs as wide as the FPN, no normalisation
    params = P.load({"detector": {"fpn_channels": 64, "head_convs": 4, "head_channels": 64, "head_norm": "none"}})
    det = params["detector"]
    torch.manual_seed(0)
    ours = build_model(params, 10).to(device).train()
    images = torch.rand(batch, 3, 64, 64, device=device)
    g = torch.Generator().manual_seed(0)
    targets = []
    for _ in range(batch):
        xy = torch.rand(2, 2, generator=g) * 30
        targets.append({"boxes": torch.cat([xy, xy + 12 + torch.rand(2, 2, generator=g) * 16], 1).to(device),
                        "labels": torch.randint(0, 10, (2,), generator=g).to(device)})

    class Wrapped(torch.nn.Module):  # torchvision wants an OrderedDict of features
        def __init__(self, backbone):
            super().__init__()
            self.body, self.out_channels = backbone, backbone.out_channels

        def forward(self, x):
            return OrderedDict((str(i), f) for i, f in enumerate(self.body(x)))

    torch.manual_seed(0)
    tv_backbone = build_model(params, 10).backbone
    tv = TVRetinaNet(Wrapped(tv_backbone), 10, anchor_generator=ours.anchor_generator, min_size=64, max_size=64,
                     image_mean=[0.0] * 3, image_std=[1.0] * 3).to(device).train()
    tv_images = list(images)

    def ours_step(opt):
        out = ours(images, branches=("cls", "reg"))
        loss = detection_loss([out["cls"]], out["reg"], ours.anchors(images), targets, det, ours.box_coder)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def tv_step(opt):
        losses = tv(tv_images, targets)
        loss = sum(losses.values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    results = {}
    for name, model, step in (("ours", ours, ours_step), ("torchvision", tv, tv_step)):
        opt = torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.9)
        for _ in range(5):
            step(opt)
        flops = training_flops(lambda: step(opt), batch)
        rates = []
        for _ in range(repeats):
            if device.type == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            for _ in range(iters):
                step(opt)
            if device.type == "cuda":
                torch.cuda.synchronize()
            rates.append(iters * batch / (time.perf_counter() - t))
        results[name] = (median_spread(rates), flops)
    mm, cv = dense_limit(device)
    limit = max(mm, cv)
    record(rows, "dense matmul 1024^3", mm / 1e9, "GFLOP/s")
    record(rows, "dense conv 3x3 64ch 32px batch 32", cv / 1e9, "GFLOP/s")
    for name, ((rate, spread), flops) in results.items():
        record(rows, f"train throughput {name} (tiny, 4x64 head, 64px, batch {batch})", rate, "images/s", spread)
        record(rows, f"train FLOPs per image {name}", flops / 1e6, "MFLOP")
        record(rows, f"fraction of machine limit {name}", flops * rate / limit, "", note="FLOPs x images/s / max(matmul, conv)")
    record(rows, "speed-up ours / torchvision", results["ours"][0][0] / results["torchvision"][0][0], "x")


def bench_reference(rows: list[dict], epochs: float, fraction: float, seed: int = 0) -> None:
    """Train on the whole default pool and on a random fraction of it with the same recipe; mAP@0.5 and time."""
    import tempfile

    from activedet import params as P
    from activedet.data.coco import load_coco
    from activedet.data.dataset import DetectionDataset
    from activedet.data.digit_scenes import generate
    from activedet.data.splits import initial_split
    from activedet.engine.predict import predict
    from activedet.engine.train import load_model, train_detector
    from activedet.evaluation import evaluate_detections

    params = P.load(str(ROOT / "params.yaml"))
    params["train"]["epochs"] = epochs
    data = ROOT / params["data_dir"] / params["dataset"]["name"]
    if not (data / "pool.json").is_file():
        generate(data, **params["dataset"]["digit_scenes"])
    pool = load_coco(data / "pool.json")
    test = load_coco(data / "test.json")
    test_ds = DetectionDataset(test, data / "test" / "images")
    for label, coco in (("100%", pool), (f"random {fraction:.0%}", initial_split(pool, round(fraction * len(pool.images)), seed))):
        ds = DetectionDataset(coco, data / "pool" / "images")
        with tempfile.TemporaryDirectory() as tmp:
            summary = train_detector(params, ds, Path(tmp) / "model.pt", seed, log=lambda m: None)
            model, _ = load_model(Path(tmp) / "model.pt")
        metrics = evaluate_detections(test.to_dict(), predict(model, test_ds, torch.device("cpu")))
        note = f"{len(coco.images)} images, {summary['iterations']} iterations, {epochs} epochs"
        record(rows, f"reference {label} labeled: mAP@0.5 (VOC07)", metrics["map50"], "", note=note)
        record(rows, f"reference {label} labeled: COCO AP", metrics["coco_ap"], "")
        record(rows, f"reference {label} labeled: training time", summary["seconds"], "s",
               note=f"{summary['images_per_second']:.0f} images/s")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["throughput", "reference", "all"])
    ap.add_argument("--epochs", type=float, default=60, help="reference: epochs over the labeled images")
    ap.add_argument("--fraction", type=float, default=0.1, help="reference: the small random labeled fraction")
    args = ap.parse_args(argv)
    rows: list[dict] = []
    print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(),
                      "machine": platform.processor() or platform.machine()}))
    if args.what in ("throughput", "all"):
        bench_throughput(rows)
    if args.what in ("reference", "all"):
        bench_reference(rows, args.epochs, args.fraction)
    write_rows(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
