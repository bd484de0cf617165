"""Learning curves, per-strategy summary with confidence intervals, annotation cost, stopping, figures.

Reads the per-cycle files of an experiment (layout
``<exp>/runs/<strategy>/seed<seed>/cycle<c>/``) and writes ``curves.csv``,
``summary.csv``, ``time_per_step.csv``, ``per_class_ap.csv``, ``stopping.csv``,
``plots/map50_by_strategy.csv`` (the DVC plot) and the figures under ``figures/``.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from . import stopping as stop
from .io import InputError, atomic_path, read_json
from .curve_stats import (LEVELS, area_over_range, area_under_curve, combine_curves,  # noqa: F401
                          common_range_alc, labels_to_reach, mean_ci, reference_map50, summarize)
from .paper.reports.common import colour

STEPS = ("train", "score", "select", "merge", "evaluate", "eval_train")  # eval_train: eval_detector plain
COST_DEFAULTS = {"seconds_per_box": 34.5, "seconds_per_image": 1.0, "reference_map50": None}


def cycle_dir(exp_dir: str | Path, strategy: str, seed: int, cycle: int) -> Path:
    return Path(exp_dir) / "runs" / strategy / f"seed{seed}" / f"cycle{cycle}"


def _bench_seconds(path: Path) -> float:
    """Wall seconds from a Snakemake benchmark file (first column ``s``), NaN when absent."""
    if not path.is_file():
        return float("nan")
    return float(pd.read_csv(path, sep="\t")["s"].iloc[0])


def labeled_before_path(exp_dir: str | Path, strategy: str, seed: int, cycle: int) -> Path:
    """The labeled set cycle ``cycle`` trains on: the seed's initial split, then the previous cycle's merge."""
    if cycle == 0:
        return Path(exp_dir) / "splits" / f"seed{seed}" / "labeled.json"
    return cycle_dir(exp_dir, strategy, seed, cycle - 1) / "labeled.json"


def _label_counts(path: Path, cache: dict) -> tuple[int, int]:
    """(images, boxes) of a labeled COCO file; every annotation counts as a drawn box (difficult ones too)."""
    if path not in cache:
        data = read_json(path)
        cache[path] = (len(data["images"]), len(data["annotations"]))
    return cache[path]


def measured_seconds(run: Path) -> float:
    """Annotation seconds measured by the tool for the batch imported at this cycle (human mode), else NaN.

    ``import-labels --imported-out`` keeps Label Studio's ``lead_time`` in ``info.annotation_seconds`` of
    ``imported_labels.json``; absent or null when the export carried none (CVAT, COCO).
    """
    path = run / "imported_labels.json"
    if not path.is_file():
        return float("nan")
    value = (read_json(path).get("info") or {}).get("annotation_seconds")
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else float("nan")


def collect_curves(exp_dir: str | Path, strategies: list[str], seeds: list[int], cycles: int,
                   pool_size: int, cost: dict | None = None) -> pd.DataFrame:
    """One row per strategy, seed and cycle: mAP, labels (images, boxes), annotation seconds, step seconds.

    ``n_boxes``: boxes of the labeled set the cycle's model trained on; ``selected_boxes_per_image``: boxes per
    image of the batch this cycle selected (NaN at the last cycle, which selects nothing); ``annotation_s``:
    ``seconds_per_image * n_labeled + seconds_per_box * n_boxes`` (``cost``), where a batch with measured time
    (human mode, :func:`measured_seconds`) counts its measured seconds instead; ``measured_annotation_s`` is
    the measured part (0 when nothing was measured).
    """
    cost = {**COST_DEFAULTS, **(cost or {})}
    spi, spb = cost["seconds_per_image"], cost["seconds_per_box"]
    counts: dict = {}
    rows = []
    for strategy in strategies:
        for seed in seeds:
            seconds = measured = 0.0
            for c in range(cycles):
                d = cycle_dir(exp_dir, strategy, seed, c)
                m = read_json(d / "metrics.json")
                n_img, n_box = _label_counts(labeled_before_path(exp_dir, strategy, seed, c), counts)
                if c == 0:
                    seconds = spi * n_img + spb * n_box
                row = {"strategy": strategy, "seed": seed, "cycle": c, "n_labeled": m["n_labeled"],
                       "fraction": m["n_labeled"] / pool_size, "map50": m["map50"],
                       "map50_area": m["map50_area"], "coco_ap": m["coco_ap"], "coco_ap50": m["coco_ap50"],
                       "n_boxes": n_box, "selected_boxes_per_image": float("nan"),
                       "annotation_s": seconds, "measured_annotation_s": measured}
                if c + 1 < cycles:  # the batch selected here: labels after this cycle's merge minus before
                    after_img, after_box = _label_counts(d / "labeled.json", counts)
                    added_img, added_box = after_img - n_img, after_box - n_box
                    row["selected_boxes_per_image"] = added_box / added_img if added_img else float("nan")
                    t = measured_seconds(d)
                    if math.isfinite(t):
                        seconds, measured = seconds + t, measured + t
                    else:
                        seconds += spi * added_img + spb * added_box
                for step in STEPS:
                    row[f"{step}_s"] = _bench_seconds(d / "benchmarks" / f"{step}.tsv")
                train = d / "train.json"
                row["train_compute_s"] = read_json(train)["seconds"] if train.is_file() else float("nan")
                score = d / "score.json"
                row["score_compute_s"] = read_json(score)["score_seconds"] if score.is_file() else float("nan")
                rows.append(row)
    return pd.DataFrame(rows)


def time_table(curves: pd.DataFrame) -> pd.DataFrame:
    cols = [f"{s}_s" for s in STEPS] + ["train_compute_s", "score_compute_s"]
    t = curves.groupby("strategy", sort=False)[cols].mean()
    t["cycle_s"] = t[[f"{s}_s" for s in STEPS]].sum(axis=1, min_count=1)
    return t.reset_index()


def per_class_table(exp_dir: str | Path, strategies: list[str], seeds: list[int], cycles: int,
                    categories: list[dict]) -> pd.DataFrame:
    """VOC07 AP@0.5 per class, strategy, seed and cycle from the cycles' ``metrics.json`` (``per_class_ap50``:
    classes with test positives only)."""
    names = {str(c["id"]): c["name"] for c in categories}
    rows = []
    for strategy in strategies:
        for seed in seeds:
            for c in range(cycles):
                m = read_json(cycle_dir(exp_dir, strategy, seed, c) / "metrics.json")
                for cat, ap in sorted((m.get("per_class_ap50") or {}).items(), key=lambda kv: int(kv[0])):
                    rows.append({"strategy": strategy, "seed": seed, "cycle": c, "n_labeled": m["n_labeled"],
                                 "category_id": int(cat), "class": names.get(str(cat), str(cat)), "ap50": ap})
    return pd.DataFrame(rows, columns=["strategy", "seed", "cycle", "n_labeled", "category_id", "class", "ap50"])


def stopping_table(exp_dir: str | Path, curves: pd.DataFrame, options: dict) -> pd.DataFrame:
    """Per strategy, seed and cycle: the stop set's agreement with the previous cycle (:mod:`.stopping`),
    whether the rule says stop by then, the cycle where it first does (``stop_cycle``) and the cycle where
    the test curve flattens (``flat_cycle``), with their labeled images.

    Reads ``runs/.../cycle<c>/stop_predictions.json`` (COCO results of the cycle's model on the stop set)
    and ``splits/seed<s>/stop_set.json``; never a label of the stop set or the test split (the test mAP is
    only copied beside it, for ``flat_cycle``).
    """
    o = {"score_threshold": 0.5, "iou_threshold": 0.5, "threshold": 0.9, "window": 2, "flat_tolerance": 0.01,
         **(options or {})}
    rows = []
    for (strategy, seed), g in curves.groupby(["strategy", "seed"], sort=False):
        g = g.sort_values("cycle")
        ids = read_json(Path(exp_dir) / "splits" / f"seed{seed}" / "stop_set.json")["image_ids"]
        previous, agreements = None, []
        for c in g["cycle"]:
            current = read_json(cycle_dir(exp_dir, strategy, seed, c) / "stop_predictions.json")
            agreements.append(float("nan") if previous is None else
                              stop.agreement(previous, current, ids, o["score_threshold"], o["iou_threshold"]))
            previous = current
        at = stop.stop_cycle(agreements, o["threshold"], o["window"])
        flat = stop.flat_cycle(g["map50"].to_numpy(), o["flat_tolerance"])
        n = g.set_index("cycle")["n_labeled"]
        for c, a, m in zip(g["cycle"], agreements, g["map50"]):
            rows.append({"strategy": strategy, "seed": seed, "cycle": c, "n_labeled": n[c], "agreement": a,
                         "says_stop": at is not None and c >= at, "map50": m,
                         "stop_cycle": at, "flat_cycle": flat,
                         "n_labeled_at_stop": n[at] if at is not None else None, "n_labeled_at_flat": n[flat]})
    return pd.DataFrame(rows)


def _mean_curve(g: pd.DataFrame, x: str) -> pd.DataFrame:
    return g.groupby("cycle")[[x, "map50"]].agg(["mean", "std"]).reset_index()


def _seeds_title(curves: pd.DataFrame) -> str:
    seeds = curves["seed"].nunique()
    return f"mean ± std over {seeds} seeds" if seeds > 1 else "1 seed"


def plot_curves(curves: pd.DataFrame, path: str | Path, title: str = "") -> None:
    """mAP@0.5 vs labeled fraction, one line per strategy in its fixed colour (``paper_reports.common.colour``);
    a ± std band only with several seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    for strategy, g in curves.groupby("strategy", sort=False):
        s = g.groupby("fraction")["map50"].agg(["mean", "std", "min", "max"]).reset_index()
        x = 100 * s["fraction"]
        ax.plot(x, 100 * s["mean"], marker="o", ms=3, label=strategy, color=colour(strategy))
        if g["seed"].nunique() > 1:
            ax.fill_between(x, 100 * (s["mean"] - s["std"]), 100 * (s["mean"] + s["std"]),
                            color=colour(strategy), alpha=0.15, lw=0)
    ax.set_xlabel("labeled images (% of the pool)")
    ax.set_ylabel("mAP@0.5 (%)")
    ax.set_title(title or f"Learning curves ({_seeds_title(curves)})")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    _save(fig, path)


def _save(fig, path: str | Path) -> None:
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def plot_cost_curves(curves: pd.DataFrame, path: str | Path) -> None:
    """Three panels: mAP@0.5 vs labeled images, labeled boxes and estimated annotation hours."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13.5, 4.2), dpi=110, sharey=True)
    panels = (("n_labeled", "labeled images", 1.0), ("n_boxes", "labeled boxes", 1.0),
              ("annotation_s", "annotation time (hours, cost model)", 1 / 3600))
    several = curves["seed"].nunique() > 1
    for ax, (x, xlabel, scale) in zip(axes, panels):
        for strategy, g in curves.groupby("strategy", sort=False):
            s = _mean_curve(g, x)
            xs, ys, sd = scale * s[(x, "mean")], 100 * s[("map50", "mean")], 100 * s[("map50", "std")]
            ax.plot(xs, ys, marker="o", ms=3, label=strategy, color=colour(strategy))
            if several:
                ax.fill_between(xs, ys - sd, ys + sd, color=colour(strategy), alpha=0.15, lw=0)
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("mAP@0.5 (%)")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Learning curves by labeling cost ({_seeds_title(curves)})")
    fig.tight_layout()
    _save(fig, path)


def plot_per_class(per_class: pd.DataFrame, path: str | Path) -> None:
    """One heatmap per strategy: AP@0.5 (%) per class (rows) and cycle (columns), mean over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    strategies = list(dict.fromkeys(per_class["strategy"])) or ["(none)"]
    fig, axes = plt.subplots(1, len(strategies), figsize=(2.2 + 1.9 * len(strategies), 4.2), dpi=110,
                             squeeze=False, sharey=True)
    image = None
    for ax, strategy in zip(axes[0], strategies):
        g = per_class[per_class["strategy"] == strategy]
        if g.empty:
            ax.set_axis_off()
            continue
        table = g.pivot_table(index="class", columns="cycle", values="ap50", aggfunc="mean", sort=False)
        image = ax.imshow(100 * table.to_numpy(), vmin=0, vmax=100, cmap="viridis", aspect="auto")
        ax.set_xticks(range(table.shape[1]), [str(c) for c in table.columns])
        ax.set_yticks(range(table.shape[0]), list(table.index))
        ax.set_xlabel("cycle")
        ax.set_title(strategy, color=colour(strategy), fontsize=10)
    if image is not None:
        fig.colorbar(image, ax=axes[0].tolist(), label="AP@0.5 (%)", shrink=0.9)
    fig.suptitle("Per-class AP@0.5 at each cycle (test split)")
    _save(fig, path)


def plot_compute(times: pd.DataFrame, path: str | Path) -> None:
    """Stacked bars: mean wall seconds per cycle of each step (Snakemake benchmarks) per strategy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(5.0, 1.0 + 0.9 * len(times)), 4.0), dpi=110)
    bottom = np.zeros(len(times))
    for k, step in enumerate(STEPS):
        v = times[f"{step}_s"].fillna(0).to_numpy()
        if not v.any():
            continue
        ax.bar(times["strategy"], v, bottom=bottom, label=step, color=f"C{k}")
        bottom += v
    ax.set_ylabel("wall seconds per cycle (mean)")
    ax.set_title("Compute per step")
    if bottom.any():
        ax.legend(fontsize=8)
    ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    _save(fig, path)


def plot_stopping(table: pd.DataFrame, path: str | Path, threshold: float) -> None:
    """Per strategy: stop-set agreement (left axis) and test mAP@0.5 (right axis) vs labeled images, the
    cycle where the rule says stop (solid line) and where the test curve flattens (dotted), first seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    strategies = list(dict.fromkeys(table["strategy"])) or ["(none)"]
    cols = min(4, len(strategies))
    rows = -(-len(strategies) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.0 * rows), dpi=110, squeeze=False)
    for ax in axes.ravel()[len(strategies):]:
        ax.set_axis_off()
    for ax, strategy in zip(axes.ravel(), strategies):
        g = table[table["strategy"] == strategy]
        if g.empty:
            continue
        g = g[g["seed"] == g["seed"].iloc[0]]
        ax.plot(g["n_labeled"], g["agreement"], marker="o", ms=3, color=colour(strategy), label="agreement")
        ax.axhline(threshold, color="gray", lw=0.8, ls="--")
        ax.set_ylim(0, 1.05)
        twin = ax.twinx()
        twin.plot(g["n_labeled"], 100 * g["map50"], color="black", lw=0.8, alpha=0.6, label="test mAP@0.5")
        twin.set_ylabel("test mAP@0.5 (%)", fontsize=8)
        stop_at, flat_at = g["n_labeled_at_stop"].iloc[0], g["n_labeled_at_flat"].iloc[0]
        if pd.notna(stop_at):
            ax.axvline(stop_at, color=colour(strategy), lw=1.5, label="rule says stop")
        ax.axvline(flat_at, color="black", lw=1.0, ls=":", label="test curve flat")
        ax.set_title(f"{strategy} (seed {g['seed'].iloc[0]})", fontsize=10)
        ax.set_xlabel("labeled images")
        ax.set_ylabel("stop-set agreement")
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle("Stopping: stabilizing predictions on the stop set vs the test curve")
    fig.tight_layout()
    _save(fig, path)


def dvc_plot_table(curves: pd.DataFrame) -> pd.DataFrame:
    """Mean mAP@0.5 over seeds per strategy and labeled size, long format: the table ``dvc plots`` draws
    with ``workflow/dvc/strategy_lines.json`` (one line per strategy, coloured by the ``strategy`` column)."""
    return (curves.groupby(["strategy", "cycle"], sort=False)
            .agg(n_labeled=("n_labeled", "mean"), fraction=("fraction", "mean"), n_boxes=("n_boxes", "mean"),
                 map50=("map50", "mean"), n_seeds=("seed", "nunique"))
            .reset_index())


def _write_csv(df: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, float_format="%.6g")


def _write_curve_outputs(curves: pd.DataFrame, summary: pd.DataFrame, times: pd.DataFrame, out_dir: Path) -> None:
    """What every report writes: curves.csv, summary.csv, time_per_step.csv and the two learning-curve figures."""
    _write_csv(curves, out_dir / "curves.csv")
    _write_csv(summary, out_dir / "summary.csv")
    _write_csv(times, out_dir / "time_per_step.csv")
    plot_curves(curves, out_dir / "figures" / "learning_curves.png")
    plot_cost_curves(curves, out_dir / "figures" / "learning_curves_cost.png")


def write_report(exp_dir: str | Path, strategies: list[str], seeds: list[int], cycles: int, pool_size: int,
                 out_dir: str | Path | None = None, *, cost: dict | None = None, stopping: dict | None = None,
                 categories: list[dict] | None = None) -> dict:
    """Write the experiment's tables and figures into ``out_dir`` (default ``exp_dir``).

    The stopping table needs every cycle's ``stop_predictions.json``; without them (``stopping=None``) it is
    skipped. Raises InputError for an empty strategy list and when a per-cycle file is missing or malformed.
    """
    exp_dir = Path(exp_dir)
    out_dir = Path(out_dir or exp_dir)
    if not strategies:
        raise InputError("no strategies to report")
    curves = collect_curves(exp_dir, strategies, seeds, cycles, pool_size, cost)
    summary = summarize(curves, exp_dir=exp_dir, cost=cost)
    times = time_table(curves)
    per_class = per_class_table(exp_dir, strategies, seeds, cycles, categories or [])
    out = {"curves": curves, "summary": summary, "times": times, "per_class": per_class}
    if stopping is not None:
        stops = stopping_table(exp_dir, curves, stopping)
        first = stops.groupby("strategy", sort=False)[["stop_cycle", "flat_cycle"]].agg(lambda v: v.astype(float).mean())
        summary = summary.merge(first.reset_index(), on="strategy", how="left")
        out.update(summary=summary, stopping=stops)
        _write_csv(stops, out_dir / "stopping.csv")
        plot_stopping(stops, out_dir / "figures" / "stopping.png", stopping.get("threshold", 0.9))
    _write_curve_outputs(curves, summary, times, out_dir)
    _write_csv(per_class, out_dir / "per_class_ap.csv")
    _write_csv(dvc_plot_table(curves), out_dir / "plots" / "map50_by_strategy.csv")
    plot_per_class(per_class, out_dir / "figures" / "per_class_ap.png")
    plot_compute(times, out_dir / "figures" / "compute_per_step.png")
    return out


def write_combined(curve_files: list[str | Path], out_dir: str | Path, cost: dict | None = None) -> dict:
    """The report of an experiment whose seeds ran apart, from their ``curves.csv`` (:func:`combine_curves`):
    ``curves.csv``, ``summary.csv``, ``time_per_step.csv`` and the two learning-curve figures in ``out_dir``,
    computed as :func:`write_report` computes them from the cycles' files. Returns ``{curves, summary,
    times, checked}``; raises ``InputError`` as :func:`combine_curves` does."""
    curves, checked = combine_curves(curve_files)
    summary, times = summarize(curves, cost=cost), time_table(curves)
    _write_curve_outputs(curves, summary, times, Path(out_dir))
    return {"curves": curves, "summary": summary, "times": times, "checked": checked}
