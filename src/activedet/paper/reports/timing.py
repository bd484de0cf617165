"""MI-AOD Table 5: time per active-learning cycle per method, from Snakemake's benchmark files.

A cycle's time is the summed wall time of its jobs that do active-learning work: train + score +
select + merge, and a method's own extra jobs (every other benchmark file of the cycle, e.g.
MGRAL's lookup-table records and agent; they may run side by side, so this is job time). The test
evaluation that draws the learning curve is not part of the method's cost and is left out. The last cycle only trains. Strategies that train the plain detector share
one cycle-0 model per seed (``initial/seed<s>``); its benchmark covers training and the test
evaluation in one job, so that cell is marked as including the evaluation.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ...report import STEPS, _bench_seconds, cycle_dir
from .common import (
    label,
    markdown_table,
    mean_std,
    mean_std_cell,
    read_curves,
    read_paper,
    seeds_label,
    value_columns,
    write_csv,
    write_markdown,
)

CYCLE_STEPS = ("train", "score", "select", "merge")
SHARED_NOTE = "cycle 0 train from the shared initial job (includes its test evaluation)"


def cycle_times(exp_dir: str | Path, curves: pd.DataFrame) -> pd.DataFrame:
    """One row per run and cycle of ``curves`` (strategy, seed, cycle, n_labeled, fraction): the seconds of
    each step and of the cycle (NaN where a step is absent)."""
    exp_dir = Path(exp_dir)
    rows = []
    for r in curves[["strategy", "seed", "cycle", "n_labeled", "fraction"]].to_dict("records"):
        d = cycle_dir(exp_dir, r["strategy"], int(r["seed"]), int(r["cycle"]))
        row = {**r, "note": ""}
        for step in STEPS:
            row[f"{step}_s"] = _bench_seconds(d / "benchmarks" / f"{step}.tsv")
        extra = sorted(p for p in (d / "benchmarks").glob("*.tsv") if p.stem not in STEPS)
        row["other_s"] = sum(_bench_seconds(p) for p in extra) if extra else float("nan")
        shared = exp_dir / "initial" / f"seed{int(r['seed'])}" / "benchmark.tsv"
        if r["cycle"] == 0 and row["train_s"] != row["train_s"] and shared.is_file():
            row["train_s"], row["note"] = _bench_seconds(shared), SHARED_NOTE
        steps = [row[f"{s}_s"] for s in CYCLE_STEPS] + [row["other_s"]]
        row["cycle_s"] = sum(v for v in steps if v == v) if any(v == v for v in steps) else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


def build_table(times: pd.DataFrame) -> pd.DataFrame:
    """Paper rows (hours) and ours (seconds, mean ± std over seeds), then both relative to random per cycle."""
    paper, _ = read_paper("miaod_table5_time.csv")
    cols = value_columns(paper)
    lines = []
    for _, r in paper.iterrows():
        lines.append({"method": label(r["method"]), "source": "paper (VOC, TITAN V)",
                      "unit": "hours", **{f"{x:g}%": f"{r[c]:.2f}" for c, (x, _) in cols.items()}})
    ours_cols = {}
    paper_x = [x for x, _ in cols.values()]

    def column(frac: float) -> str:
        """Ours at the paper's proportion when within 0.1 points of it (827 of 16551 is its 5%)."""
        pct = 100 * frac
        near = [x for x in paper_x if abs(x - pct) <= 0.1]
        key = f"{near[0]:g}%" if near else f"ours {pct:.3g}%"
        ours_cols.setdefault(key, frac)
        return key

    for strategy, g in times.groupby("strategy", sort=False):
        row = {"method": label(strategy), "unit": "seconds"}
        n_seeds = g["seed"].nunique()
        for frac, gf in g.groupby("fraction"):
            m, s, _ = mean_std(gf["cycle_s"])
            row[column(frac)] = mean_std_cell(m, s) + (" *" if (gf["note"] == SHARED_NOTE).any() else "")
        row["source"] = f"ours ({strategy}, {seeds_label(n_seeds)})"
        lines.append(row)
    # Ratios to random cancel the hardware: the paper's and ours compare directly.
    base = paper[paper["method"] == "random"]
    for _, r in paper[paper["method"] != "random"].iterrows():
        lines.append({"method": label(r["method"]), "source": "paper", "unit": "x random",
                      **{f"{x:g}%": f"{r[c] / base[c].iloc[0]:.2f}" for c, (x, _) in cols.items()}})
    ref = times[times["strategy"] == "random"].set_index(["seed", "cycle"])["cycle_s"]
    if not ref.empty:
        for strategy, g in times[times["strategy"] != "random"].groupby("strategy", sort=False):
            ratio = g.set_index(["seed", "cycle"])["cycle_s"] / ref
            row = {"method": label(strategy),
                   "source": f"ours ({strategy})", "unit": "x random"}
            for frac, gf in g.groupby("fraction"):
                m, s, _ = mean_std(ratio.loc[list(zip(gf["seed"], gf["cycle"]))])
                row[column(frac)] = mean_std_cell(m, s, 2)
            lines.append(row)
    paper_cols = [f"{x:g}%" for x in paper_x]
    return pd.DataFrame(lines).reindex(columns=["method", "source", "unit", *paper_cols,
                                                *sorted(set(ours_cols) - set(paper_cols), key=ours_cols.get)])


def write(exp_dir, curves_csv, out_dir) -> list[Path]:
    times = cycle_times(exp_dir, read_curves(curves_csv))
    table = build_table(times)
    out_dir = Path(out_dir)
    caption = ("Time per active-learning cycle vs the labeled proportion (the paper's at its own proportions). "
               "Ours: wall seconds of the cycle's train + score + select + merge jobs and of a method's own extra "
               "jobs (e.g. MGRAL's lookup records and agent; `other_s` in the steps file), from the Snakemake "
               "benchmarks, "
               "mean ± std over seeds; the last cycle only trains. `x random`: the cycle's time over random's at "
               f"the same cycle and seed. * {SHARED_NOTE}. Per-step seconds: miaod_table5_steps.csv.")
    return [write_csv(table, out_dir / "miaod_table5.csv"),
            write_csv(times, out_dir / "miaod_table5_steps.csv"),
            write_markdown(markdown_table(table, "MI-AOD Table 5: time per cycle", caption),
                           out_dir / "miaod_table5.md")]
