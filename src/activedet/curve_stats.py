"""Statistics of learning curves: the area under the learning curve (ALC), paired confidence intervals against
a reference strategy, the labels needed to reach a share of the 100%-labeled mAP@0.5, and the per-strategy
summary table that :mod:`activedet.report` writes (``summary.csv``)."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from .io import InputError, read_json

LEVELS = (0.90, 0.95)  # "labels to reach this share of the 100%-labeled mAP@0.5"


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


def paired_cycle_differences(curves: pd.DataFrame, strategy: str, metric: str = "map50",
                             level: float = 0.95) -> pd.DataFrame:
    """``strategy`` minus every other strategy at each cycle, paired by seed, with a t interval.

    ``curves``: the rows of ``curves.csv`` (strategy, seed, cycle, n_labeled, ``metric``). Only seeds both
    strategies ran are paired. Returns one row per (other, cycle): other, cycle, n_labeled, seeds, diff_mean,
    ci_low, ci_high (``metric`` units; NaN bounds under two seeds), and ``ahead`` (the interval's low end above
    0). This is the per-cycle form of ``summary.csv``'s ALC interval (the same paired t interval, `mean_ci`).
    """
    mine = curves[curves["strategy"] == strategy].set_index(["seed", "cycle"])[metric]
    rows = []
    for other, g in curves[curves["strategy"] != strategy].groupby("strategy", sort=False):
        theirs = g.set_index(["seed", "cycle"])
        for cycle, gc in theirs.groupby(level="cycle"):
            common = [k for k in gc.index if k in mine.index]
            diff = np.array([mine[k] - gc.loc[k, metric] for k in common], dtype=float)
            m, lo, hi = mean_ci(diff, level)
            rows.append({"other": other, "cycle": int(cycle), "n_labeled": int(gc["n_labeled"].iloc[0]),
                         "seeds": len(common), "diff_mean": m, "ci_low": lo, "ci_high": hi,
                         "ahead": bool(lo > 0) if not math.isnan(lo) else False})
    return pd.DataFrame(rows)


def area_over_range(x: np.ndarray, y: np.ndarray, lo: float, hi: float) -> float:
    """Mean of the piecewise-linear curve through (x, y) over [lo, hi]: trapezoid area / (hi - lo).

    The ends are interpolated linearly; NaN when [lo, hi] is not inside the curve's x range; the value at
    ``lo`` when ``hi == lo``.
    """
    order = np.argsort(x, kind="stable")
    x, y = np.asarray(x, float)[order], np.asarray(y, float)[order]
    eps = 1e-9 * max(1.0, abs(hi))
    if not len(x) or hi < lo or lo < x[0] - eps or hi > x[-1] + eps:
        return float("nan")
    if hi == lo:
        return float(np.interp(lo, x, y))
    grid = np.concatenate(([lo], x[(x > lo) & (x < hi)], [hi]))
    return float(np.trapezoid(np.interp(grid, x, y), grid) / (hi - lo))


def common_range_alc(curves: pd.DataFrame, x: str) -> pd.DataFrame:
    """ALC over labels counted as ``x`` (``n_boxes``, ``annotation_s``) per strategy and seed.

    Strategies spend different boxes and seconds for the same images, so their curves end at different
    x: each seed's curves are compared over the range all strategies cover (largest start .. smallest
    end), where every curve is known; the value is the mean mAP@0.5 over that range.
    """
    rows = []
    for seed, g in curves.groupby("seed"):
        ends = g.groupby("strategy", sort=False)[x].agg(["min", "max"])
        lo, hi = float(ends["min"].max()), float(ends["max"].min())
        for strategy, gs in g.groupby("strategy", sort=False):
            rows.append({"strategy": strategy, "seed": seed, "lo": lo, "hi": hi,
                         "alc": area_over_range(gs[x].to_numpy(), gs["map50"].to_numpy(), lo, hi)})
    return pd.DataFrame(rows, columns=["strategy", "seed", "lo", "hi", "alc"])


def labels_to_reach(x: np.ndarray, y: np.ndarray, target: float) -> float:
    """Labels (x) at which the curve first reaches ``target``, linearly interpolated between the two
    cycles around the crossing; ``x[0]`` when the first cycle already reaches it; NaN when none does."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    hit = np.flatnonzero(y >= target)
    if not len(hit) or not math.isfinite(target):
        return float("nan")
    i = int(hit[0])
    if i == 0:
        return float(x[0])
    return float(x[i - 1] + (target - y[i - 1]) / (y[i] - y[i - 1]) * (x[i] - x[i - 1]))


def reference_map50(curves: pd.DataFrame, exp_dir: str | Path | None, seeds: list[int],
                    cost: dict | None) -> tuple[float, str]:
    """The 100%-labeled mAP@0.5 and where it comes from.

    In order: ``cost.reference_map50``; the mean over seeds of ``reference/seed<s>/metrics.json`` (rule
    train_reference); else the best mean mAP@0.5 any strategy reaches at any cycle of this experiment, a
    stand-in that makes "90%" mean "90% of the best seen here".
    """
    given = (cost or {}).get("reference_map50")
    if given is not None:
        return float(given), "cost.reference_map50"
    if exp_dir is not None:
        files = [Path(exp_dir) / "reference" / f"seed{s}" / "metrics.json" for s in seeds]
        if files and all(f.is_file() for f in files):
            return float(np.mean([read_json(f)["map50"] for f in files])), "trained on 100% of the pool"
    best = curves.groupby(["strategy", "cycle"])["map50"].mean().max()
    return float(best), "best mean mAP@0.5 of this experiment (no 100%-labeled reference)"


def summarize(curves: pd.DataFrame, reference: str = "random", exp_dir: str | Path | None = None,
              cost: dict | None = None) -> pd.DataFrame:
    """One row per strategy: mean/std mAP@0.5 at each cycle, ALC over images, boxes and annotation seconds,
    the paired ALC difference to ``reference`` (same seed = same initial set) with its 95% confidence
    interval, and the labels (images, boxes, seconds) the mean curve needs to reach 90% and 95% of the
    100%-labeled mAP@0.5 (:func:`reference_map50`)."""
    alc = (curves.groupby(["strategy", "seed"])
           .apply(lambda g: area_under_curve(g["fraction"].to_numpy(), g["map50"].to_numpy()), include_groups=False)
           .rename("alc").reset_index())
    alc_boxes, alc_seconds = common_range_alc(curves, "n_boxes"), common_range_alc(curves, "annotation_s")
    ref_map, ref_source = reference_map50(curves, exp_dir, sorted(curves["seed"].unique()), cost)
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
        row["alc_boxes"] = alc_boxes.loc[alc_boxes["strategy"] == strategy, "alc"].mean()
        row["alc_seconds"] = alc_seconds.loc[alc_seconds["strategy"] == strategy, "alc"].mean()
        mean = g.groupby("cycle")[["n_labeled", "n_boxes", "annotation_s", "map50"]].mean()
        row["reference_map50"], row["reference_source"] = ref_map, ref_source
        for level in LEVELS:
            tag = f"{round(100 * level)}"
            for x, name in (("n_labeled", "images"), ("n_boxes", "boxes"), ("annotation_s", "seconds")):
                row[f"{name}_to_{tag}"] = labels_to_reach(mean[x].to_numpy(), mean["map50"].to_numpy(), level * ref_map)
        rows.append(row)
    return pd.DataFrame(rows)


CURVE_KEY = ["strategy", "seed", "cycle"]
# What a cycle measured, as opposed to how long it took: a seed in two files must agree on these.
RESULT_COLUMNS = ["n_labeled", "fraction", "map50", "map50_area", "coco_ap", "coco_ap50", "n_boxes", "annotation_s"]


def read_curves(path: Path) -> pd.DataFrame:
    """A ``curves.csv`` that activedet wrote (one row per strategy, seed and cycle).

    Raises InputError naming the file: missing, not a CSV, a column of ``CURVE_KEY + RESULT_COLUMNS``
    missing, or a (strategy, seed, cycle) twice."""
    if not Path(path).is_file():
        raise InputError(f"{path}: file not found")
    try:
        curves = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: not a curves.csv ({str(e).splitlines()[0]})") from None
    missing = [c for c in CURVE_KEY + RESULT_COLUMNS if c not in curves.columns]
    if missing:
        raise InputError(f"{path}: not a curves.csv of activedet (no column {', '.join(missing)})")
    if curves.duplicated(CURVE_KEY).any():
        row = curves[curves.duplicated(CURVE_KEY)].iloc[0]
        raise InputError(f"{path}: {row['strategy']} seed {row['seed']} cycle {row['cycle']} appears twice")
    return curves


def combine_curves(paths: list[str | Path]) -> tuple[pd.DataFrame, list[str]]:
    """The ``curves.csv`` of one experiment whose seeds ran apart (one run per seed or per group of seeds: in
    different sessions, clusters or Snakemake invocations), as one run of all of them would have written it.

    Seeds are independent (each has its own initial split and cycle-0 model) and a seed's runs are
    deterministic on a CPU, so the union of runs of disjoint seeds is the full experiment. A (strategy, seed)
    found in several files is a check of that: its ``RESULT_COLUMNS`` must be equal in each, and it is kept
    from the first file. Rows keep the strategies' order of first appearance, then seed and cycle.

    Returns the curves and one line per (strategy, seed) checked that way. Raises ``InputError`` naming the
    file: unreadable or missing columns, a row twice in one file, a (strategy, seed) whose cycles differ
    from the others', or a (strategy, seed) whose results differ from an earlier file's.
    """
    if not paths:
        raise InputError("no curves.csv to combine")
    kept: dict[tuple, tuple[Path, pd.DataFrame]] = {}
    checked, cycles = [], None
    for path in map(Path, paths):
        curves = read_curves(path)
        for (strategy, seed), g in curves.groupby(["strategy", "seed"], sort=False):
            g = g.sort_values("cycle")
            own = tuple(g["cycle"])
            if cycles is None:
                cycles = (own, path, strategy, seed)
            elif own != cycles[0]:
                raise InputError(f"{path}: {strategy} seed {seed} has cycles {list(own)}, but {cycles[1]} has "
                                 f"{list(cycles[0])} for {cycles[2]} seed {cycles[3]}")
            if (strategy, seed) in kept:
                first_path, first = kept[(strategy, seed)]
                a, b = first[RESULT_COLUMNS].to_numpy(float), g[RESULT_COLUMNS].to_numpy(float)
                if not np.array_equal(a, b, equal_nan=True):
                    bad = int(np.flatnonzero(~((a == b) | (np.isnan(a) & np.isnan(b)))).min() // len(RESULT_COLUMNS))
                    raise InputError(f"{path}: {strategy} seed {seed} cycle {own[bad]} differs from {first_path} "
                                     f"(map50 {b[bad][2]:.6g} against {a[bad][2]:.6g}); a seed's runs must be "
                                     "equal to be combined")
                checked.append(f"{strategy} seed {seed}: {path} equals {first_path} at every cycle")
                continue
            kept[(strategy, seed)] = (path, g)
    order = list(dict.fromkeys(strategy for strategy, _ in kept))
    rows = [kept[k][1] for k in sorted(kept, key=lambda k: (order.index(k[0]), k[1]))]
    return pd.concat(rows, ignore_index=True), checked
