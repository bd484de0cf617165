"""Learning curves, per-strategy summary with confidence intervals, time per step, figure.

Reads the per-cycle files of an experiment (layout
``<exp>/runs/<strategy>/seed<seed>/cycle<c>/``) and writes ``curves.csv``,
``summary.csv``, ``time_per_step.csv`` and ``figures/learning_curves.png``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .io import InputError, atomic_path, read_json

STEPS = ("train", "score", "select", "merge", "evaluate", "eval_train")  # eval_train: eval_detector plain


def cycle_dir(exp_dir: str | Path, strategy: str, seed: int, cycle: int) -> Path:
    return Path(exp_dir) / "runs" / strategy / f"seed{seed}" / f"cycle{cycle}"


def _bench_seconds(path: Path) -> float:
    """Wall seconds from a Snakemake benchmark file (first column ``s``), NaN when absent."""
    if not path.is_file():
        return float("nan")
    return float(pd.read_csv(path, sep="\t")["s"].iloc[0])


def collect_curves(exp_dir: str | Path, strategies: list[str], seeds: list[int], cycles: int,
                   pool_size: int) -> pd.DataFrame:
    rows = []
    for strategy in strategies:
        for seed in seeds:
            for c in range(cycles):
                d = cycle_dir(exp_dir, strategy, seed, c)
                m = read_json(d / "metrics.json")
                row = {"strategy": strategy, "seed": seed, "cycle": c, "n_labeled": m["n_labeled"],
                       "fraction": m["n_labeled"] / pool_size, "map50": m["map50"],
                       "map50_area": m["map50_area"], "coco_ap": m["coco_ap"], "coco_ap50": m["coco_ap50"]}
                for step in STEPS:
                    row[f"{step}_s"] = _bench_seconds(d / "benchmarks" / f"{step}.tsv")
                train = d / "train.json"
                row["train_compute_s"] = read_json(train)["seconds"] if train.is_file() else float("nan")
                score = d / "score.json"
                row["score_compute_s"] = read_json(score)["score_seconds"] if score.is_file() else float("nan")
                rows.append(row)
    return pd.DataFrame(rows)


def area_under_curve(fraction: np.ndarray, values: np.ndarray) -> float:
    """ALC: the trapezoid area under mAP vs labeled fraction, divided by the fraction's span.

    ``fraction`` and ``values`` are [n] arrays (any order); the result is in mAP units: the curve's
    average height over the labeled range, which is not the mean of the cycles' mAPs (the end points
    weigh half, and uneven fraction steps weigh by their width). A single point (or no span) gives its mAP.
    """
    order = np.argsort(fraction)
    x, y = np.asarray(fraction)[order], np.asarray(values)[order]
    if len(x) < 2 or x[-1] == x[0]:
        return float(y.mean())
    return float(np.trapezoid(y, x) / (x[-1] - x[0]))


def mean_ci(values: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and the t-distribution confidence interval; NaN bounds with fewer than two values."""
    from scipy import stats

    v = np.asarray(values, dtype=float)
    m = float(v.mean()) if len(v) else float("nan")
    if len(v) < 2:
        return m, float("nan"), float("nan")
    half = stats.t.ppf(0.5 + level / 2, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v))
    return m, m - half, m + half


def summarize(curves: pd.DataFrame, reference: str = "random") -> pd.DataFrame:
    """One row per strategy: mean/std mAP@0.5 at each cycle, ALC (:func:`area_under_curve` per seed, then
    mean/std over seeds), and the paired ALC difference to
    ``reference`` (same seed = same initial set) with its 95% confidence interval."""
    alc = (curves.groupby(["strategy", "seed"])
           .apply(lambda g: area_under_curve(g["fraction"].to_numpy(), g["map50"].to_numpy()), include_groups=False)
           .rename("alc").reset_index())
    rows = []
    for strategy, g in curves.groupby("strategy", sort=False):
        row: dict = {"strategy": strategy, "n_seeds": g["seed"].nunique()}
        for c, gc in g.groupby("cycle"):
            row[f"n_labeled_c{c}"] = int(gc["n_labeled"].iloc[0])
            row[f"map50_c{c}_mean"] = gc["map50"].mean()
            row[f"map50_c{c}_std"] = gc["map50"].std(ddof=1) if len(gc) > 1 else float("nan")
        a = alc[alc["strategy"] == strategy].set_index("seed")["alc"]
        row["alc_mean"], row["alc_std"] = a.mean(), (a.std(ddof=1) if len(a) > 1 else float("nan"))
        ref = alc[alc["strategy"] == reference].set_index("seed")["alc"]
        common = a.index.intersection(ref.index)
        if reference in set(alc["strategy"]) and len(common):
            diff, lo, hi = mean_ci((a[common] - ref[common]).to_numpy())
        else:
            diff = lo = hi = float("nan")
        row["alc_diff_vs_random"], row["alc_diff_ci95_low"], row["alc_diff_ci95_high"] = diff, lo, hi
        rows.append(row)
    return pd.DataFrame(rows)


def time_table(curves: pd.DataFrame) -> pd.DataFrame:
    cols = [f"{s}_s" for s in STEPS] + ["train_compute_s", "score_compute_s"]
    t = curves.groupby("strategy", sort=False)[cols].mean()
    t["cycle_s"] = t[[f"{s}_s" for s in STEPS]].sum(axis=1, min_count=1)
    return t.reset_index()


def plot_curves(curves: pd.DataFrame, path: str | Path, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    for strategy, g in curves.groupby("strategy", sort=False):
        s = g.groupby("fraction")["map50"].agg(["mean", "std", "min", "max"]).reset_index()
        x = 100 * s["fraction"]
        line, = ax.plot(x, 100 * s["mean"], marker="o", ms=3, label=strategy)
        if g["seed"].nunique() > 1:
            ax.fill_between(x, 100 * (s["mean"] - s["std"]), 100 * (s["mean"] + s["std"]),
                            color=line.get_color(), alpha=0.15, lw=0)
    ax.set_xlabel("labeled images (% of the pool)")
    ax.set_ylabel("mAP@0.5 (%)")
    seeds = curves["seed"].nunique()
    ax.set_title(title or f"Learning curves (mean{' ± std' if seeds > 1 else ''} over {seeds} seed{'s' * (seeds > 1)})")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def _write_csv(df: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, float_format="%.6g")


def write_report(exp_dir: str | Path, strategies: list[str], seeds: list[int], cycles: int, pool_size: int,
                 out_dir: str | Path | None = None) -> dict:
    exp_dir = Path(exp_dir)
    out_dir = Path(out_dir or exp_dir)
    if not strategies:
        raise InputError("no strategies to report")
    curves = collect_curves(exp_dir, strategies, seeds, cycles, pool_size)
    summary = summarize(curves)
    times = time_table(curves)
    _write_csv(curves, out_dir / "curves.csv")
    _write_csv(summary, out_dir / "summary.csv")
    _write_csv(times, out_dir / "time_per_step.csv")
    plot_curves(curves, out_dir / "figures" / "learning_curves.png")
    return {"curves": curves, "summary": summary, "times": times}
