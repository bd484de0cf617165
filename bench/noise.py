"""How much of a learning curve's seed spread comes from the test set: split-half estimate per cycle.

    python -m bench.noise results/<experiment> --strategy random --splits 100 --out test_noise.csv

Every seed of a cycle is rated on the same test images, so the test set adds to the seed spread only
through how differently the seeds' models fare on those particular images (model x image interaction).
Rated on a random half of the test set that interaction's variance doubles, the rest stays:

    sd_half^2 = s^2 + 2 t^2,    sd_full^2 = s^2 + t^2    =>    t^2 = sd_half^2 - sd_full^2

with ``sd_full`` the seeds' standard deviation of mAP@0.5 on the whole test set, ``sd_half`` the root
mean square of it over ``--splits`` random halvings (both halves of each), ``t`` the test set's share
and ``s`` the spread of the labeled sets and of training (what no test set can remove). Each model
predicts the test set once; halves are rated from its devkit matching (``evaluation.voc.subset_map``).
Columns: strategy, cycle, n_labeled, n_seeds, map50_mean, sd_full, sd_half, sd_test (t), sd_rest (s),
splits, n_test.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from .common import experiment_parser, run_tool

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv=None) -> argparse.Namespace:
    ap = experiment_parser("python -m bench.noise", __doc__, strategy="random")
    ap.add_argument("--test-images", default=str(ROOT / "data" / "digit_scenes" / "test" / "images"))
    ap.add_argument("--test-annotations", default=str(ROOT / "data" / "digit_scenes" / "test.json"))
    ap.add_argument("--splits", type=int, default=100, help="random halvings of the test set")
    ap.add_argument("--seed", type=int, default=0, help="seed of the halvings")
    return ap.parse_args(argv)


def model_paths(exp: Path, strategy: str) -> dict[tuple[int, int], Path]:
    """(seed, cycle) -> the model behind that point of the curve (cycle 0: the shared initial model)."""
    found = {}
    for path in sorted((exp / "runs" / strategy).glob("seed*/cycle*/model.pt")):
        seed, cycle = (int(re.sub(r"\D", "", p)) for p in (path.parent.parent.name, path.parent.name))
        found[(seed, cycle)] = path
    for path in sorted((exp / "initial").glob("seed*/model.pt")):
        found.setdefault((int(re.sub(r"\D", "", path.parent.name)), 0), path)
    return found


def matches_of(model_path: Path, test_images: str, test_annotations: str):
    """(devkit matching of the model's test detections, labeled images behind the model)."""
    import torch

    from activedet.checkpoint import load_model
    from activedet.cli.common import configure_images, load_coco
    from activedet.data.dataset import detector_dataset
    from activedet.engine.predict import predict
    from activedet.evaluation.voc import class_matches

    model, ckpt = load_model(model_path, torch.device("cpu"))
    configure_images(ckpt["params"])
    test = load_coco(test_annotations, ckpt["params"])
    ds = detector_dataset(ckpt["params"], test, test_images, ckpt["categories"])
    with torch.no_grad():
        dets = predict(model, ds, torch.device("cpu"))
    return class_matches(test.to_dict(), dets), ckpt.get("n_images"), test.image_ids


def split_half_table(maps: pd.DataFrame, n_test: int, splits: int) -> pd.DataFrame:
    """Per cycle, from ``maps`` (columns cycle, seed, n_labeled, full, and half_<k>_<a|b> per halving): the
    module docstring's columns."""
    rows = []
    halves = [c for c in maps.columns if c.startswith("half_")]
    for cycle, g in maps.groupby("cycle"):
        sd_full = float(g["full"].std(ddof=1))
        sd_half = float(np.sqrt(np.mean([g[c].std(ddof=1) ** 2 for c in halves])))
        t2 = max(0.0, sd_half ** 2 - sd_full ** 2)
        rows.append({"cycle": int(cycle), "n_labeled": int(g["n_labeled"].iloc[0]), "n_seeds": len(g),
                     "map50_mean": float(g["full"].mean()), "sd_full": sd_full, "sd_half": sd_half,
                     "sd_test": float(np.sqrt(t2)), "sd_rest": float(np.sqrt(max(0.0, sd_full ** 2 - t2))),
                     "splits": splits, "n_test": n_test})
    return pd.DataFrame(rows)


def main(argv=None) -> int:
    return run_tool(run, parse_args(argv))


def run(args) -> int:
    import torch

    from activedet.evaluation.voc import subset_map
    from activedet.io import InputError, atomic_path

    torch.set_num_threads(args.threads)
    exp = Path(args.experiment)
    paths = model_paths(exp, args.strategy)
    if not paths:
        raise InputError(f"{exp}: no models of strategy {args.strategy} (runs/{args.strategy}/seed*/cycle*/model.pt)")
    rows, halvings = [], None
    for (seed, cycle), path in sorted(paths.items()):
        matches, n_labeled, test_ids = matches_of(path, args.test_images, args.test_annotations)
        if halvings is None:
            rng = np.random.default_rng(args.seed)
            halvings = [rng.permutation(sorted(test_ids)) for _ in range(args.splits)]
        row = {"seed": seed, "cycle": cycle, "n_labeled": n_labeled, "full": subset_map(matches, test_ids)}
        half = len(test_ids) // 2
        for k, perm in enumerate(halvings):
            row[f"half_{k}_a"] = subset_map(matches, perm[:half])
            row[f"half_{k}_b"] = subset_map(matches, perm[half:])
        rows.append(row)
        print(f"seed {seed} cycle {cycle}: mAP@0.5 {row['full']:.4f}", flush=True)
    table = split_half_table(pd.DataFrame(rows), len(test_ids), args.splits)
    table.insert(0, "strategy", args.strategy)
    with atomic_path(args.out) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")
    print(table.to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
