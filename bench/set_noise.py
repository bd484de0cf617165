"""How much of a cycle's seed spread is the labeled set drawn, and how much is training: a one-way analysis.

    python -m bench.set_noise results/<experiment> --strategy random --cycle 4 --metrics map50 coco_ap \
        --retrained results/set_vs_training --out set_vs_training.csv --summary set_vs_training_summary.csv

Each seed's labeled set of the cycle was trained once by the run (its own training seed) and again with other
training seeds into ``--retrained`` (``s<seed>_t<training seed>.metrics.json``, from ``python -m activedet
train`` and ``evaluate``; the README of docs/results/default_five_seeds/ gives the loop). With k trainings
of each of n sets, the balanced one-way random-effects analysis of each metric (mAP@0.5, COCO AP) gives

    MS_within  = sum over sets and trainings of (x - set mean)^2 / (n (k - 1))     -> sd_training^2
    MS_between = k * sum over sets of (set mean - grand mean)^2 / (n - 1)
    sd_set^2   = max(0, (MS_between - MS_within) / k)

``sd_set`` is the spread the draw of the labeled set causes with training noise averaged out, and the floor
of the seed spread of one training per set: ``sqrt(sd_set^2 + sd_training^2)`` is what one training per
set shows; ``sd_own_seeds``, the spread of the run's own trainings (the learning curve's), estimates the
same. The test set's share (``bench.noise``) is inside both components. ``--own-curves`` takes the run's own
trainings from a committed ``curves.csv`` (as ``activedet.curve_stats.read_curves`` reads it) instead of the
experiment folder's ``metrics.json`` files, for a run whose folder is gone. Written by hand: the two mean
squares are a few lines, and a balanced design needs nothing a statistics package would add.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import pandas as pd

from .common import experiment_parser, run_tool
from .noise import model_paths


def parse_args(argv=None) -> argparse.Namespace:
    ap = experiment_parser("python -m bench.set_noise", __doc__, strategy="random")
    ap.add_argument("--cycle", type=int, required=True)
    ap.add_argument("--retrained", type=Path, required=True,
                    help="folder of s<seed>_t<training seed>.metrics.json for the cycle's labeled sets")
    ap.add_argument("--summary", type=Path, required=True, help="CSV of the analysis (one row per metric)")
    ap.add_argument("--own-curves", type=Path, default=None,
                    help="the run's own trainings from this curves.csv instead of the experiment folder")
    ap.add_argument("--metrics", nargs="+", default=["map50", "coco_ap"], choices=["map50", "map50_area", "coco_ap"],
                    help="metrics.json keys analysed (VOC07 mAP@0.5, area mAP@0.5, COCO AP)")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    return run_tool(run, parse_args(argv))


def variance_components(table: pd.DataFrame, metric: str = "map50") -> dict:
    """``table`` with columns ``seed`` (the labeled set) and ``metric``, the same number of trainings per set:
    sd_training, sd_set, sd_one_training (one training per set), n_sets, trainings_per_set, mean.

    Raises ValueError for an unbalanced table or fewer than 2 sets or trainings per set."""
    k_per_set = table.groupby("seed")[metric].size()
    n, k = len(k_per_set), int(k_per_set.iloc[0]) if len(k_per_set) else 0
    if n < 2 or k < 2 or (k_per_set != k).any():
        raise ValueError(f"need at least 2 labeled sets with the same number (>= 2) of trainings each, got {dict(k_per_set)}")
    means = table.groupby("seed")[metric].transform("mean")
    ms_within = float(((table[metric] - means) ** 2).sum()) / (n * (k - 1))
    set_means = table.groupby("seed")[metric].mean()
    ms_between = k * float(((set_means - set_means.mean()) ** 2).sum()) / (n - 1)
    sd_set2 = max(0.0, (ms_between - ms_within) / k)
    return {"n_sets": n, "trainings_per_set": k, "mean": float(table[metric].mean()),
            "sd_training": ms_within ** 0.5, "sd_set": sd_set2 ** 0.5, "sd_one_training": (sd_set2 + ms_within) ** 0.5}


def run(args) -> int:
    from activedet.io import InputError, atomic_path, read_json

    exp = Path(args.experiment)

    def values(path: Path) -> dict:
        m = read_json(path)
        missing = [k for k in args.metrics if k not in m]
        if missing:
            raise InputError(f"{path}: no {', '.join(missing)} (a metrics.json that evaluate writes)")
        return {k: m[k] for k in args.metrics}

    if args.own_curves is not None:
        from activedet.curve_stats import read_curves  # its columns include every --metrics choice

        curves = read_curves(args.own_curves)
        own = curves[(curves["strategy"] == args.strategy) & (curves["cycle"] == args.cycle)].sort_values("seed")
        if own.empty:
            raise InputError(f"{args.own_curves}: no row of strategy {args.strategy} at cycle {args.cycle}")
        rows = [{"seed": int(r["seed"]), "training_seed": "own", **{k: float(r[k]) for k in args.metrics}}
                for _, r in own.iterrows()]
    else:
        rows = [{"seed": seed, "training_seed": "own", **values(model.parent / "metrics.json")}
                for (seed, cycle), model in sorted(model_paths(exp, args.strategy).items()) if cycle == args.cycle]
    for path in sorted(Path(args.retrained).glob("s*_t*.metrics.json")):
        name = re.fullmatch(r"s(\d+)_t(\d+)\.metrics\.json", path.name)
        if name is None:
            raise InputError(f"{path}: not named s<seed>_t<training seed>.metrics.json")
        rows.append({"seed": int(name[1]), "training_seed": name[2], **values(path)})
    table = pd.DataFrame(rows, columns=["seed", "training_seed", *args.metrics])
    if table.empty or table["training_seed"].ne("own").sum() == 0:
        raise InputError(f"{exp} / {args.retrained}: no metrics of strategy {args.strategy} cycle {args.cycle} "
                         f"and of its retrained labeled sets")
    table = table[table["seed"].isin(table.loc[table["training_seed"] != "own", "seed"])]
    summary = []
    for metric in args.metrics:
        try:
            row = {"strategy": args.strategy, "cycle": args.cycle, "metric": metric, **variance_components(table, metric)}
        except ValueError as e:
            raise InputError(f"{args.retrained}: {e}") from None
        row["sd_own_seeds"] = float(table.loc[table["training_seed"] == "own", metric].std())  # the curve's spread
        summary.append(row)
    with atomic_path(args.out) as tmp:
        table.sort_values(["seed", "training_seed"]).to_csv(tmp, index=False, float_format="%.6g")
    with atomic_path(args.summary) as tmp:
        pd.DataFrame(summary).to_csv(tmp, index=False, float_format="%.6g")
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
