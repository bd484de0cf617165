"""MI-AOD Table 2 beside the paper: accuracy per labeled proportion with and without IUL."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ...io import InputError
from ..reports.common import (colour, markdown_table, mean_std, mean_std_cell, pyplot, read_paper,
                                    save_figure, seeds_label, value_columns, write_csv, write_markdown)

# The paper's rows (random selection, IUL off / on) and the methods that reproduce them.
PAPER_ROWS = {0: "random", 1: "iul_random"}
LABELS = {"random": "random, no IUL", "iul_random": "random, IUL", "entropy": "entropy, no IUL",
          "iul": "IUL discrepancy, IUL"}


def read_runs(files: list[str | Path]) -> pd.DataFrame:
    frames = []
    for f in files:
        try:
            df = pd.read_csv(f)
        except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
            raise InputError(f"{f}: not a readable run table ({str(e).splitlines()[0]})") from None
        missing = {"method", "seed", "cycle", "fraction", "accuracy"} - set(df.columns)
        if missing:
            raise InputError(f"{f}: lacks the columns {sorted(missing)} (paper-table2-run writes them)")
        frames.append(df)
    if not frames:
        raise InputError("paper-table2: no run tables given")
    return pd.concat(frames, ignore_index=True)


def build_table(runs: pd.DataFrame) -> pd.DataFrame:
    paper, _ = read_paper("miaod_table2_cifar10_iul.csv")
    cols = value_columns(paper)
    same = (runs["dataset"] == "cifar10").all() if "dataset" in runs else False
    lines = []
    for _, r in paper.iterrows():
        lines.append({"IUL": "yes" if int(r["iul"]) == 1 else "no", "selection": "random",
                      "source": "paper (CIFAR-10, ResNet-18)",
                      **{f"{x:g}%": f"{r[c]:.2f}" for c, (x, _) in cols.items()}})
    dataset = runs["dataset"].iloc[0] if "dataset" in runs else "?"
    for method, g in runs.groupby("method", sort=False):
        iul = bool(g["iul"].iloc[0]) if "iul" in g else method.startswith("iul")
        row = {"IUL": "yes" if iul else "no", "selection": g["selection"].iloc[0] if "selection" in g else method,
               "source": f"ours ({method}, {dataset}, {seeds_label(g['seed'].nunique())})"}
        for frac, gf in g.groupby("fraction"):
            m, s, _ = mean_std(100 * gf["accuracy"])
            row[f"{100 * frac:g}%" if same else f"ours {100 * frac:.3g}%"] = mean_std_cell(m, s, 2)
        lines.append(row)
    return pd.DataFrame(lines)


def plot(runs: pd.DataFrame, path) -> None:
    plt = pyplot()
    paper, _ = read_paper("miaod_table2_cifar10_iul.csv")
    cols = value_columns(paper)
    dataset = runs["dataset"].iloc[0] if "dataset" in runs else "ours"
    same = dataset == "cifar10"
    fig, axes = plt.subplots(1, 1 if same else 2, figsize=(5.2 if same else 9.6, 3.9), dpi=110, squeeze=False)
    ax_p, ax_o = axes[0][0], axes[0][0 if same else 1]
    for _, r in paper.iterrows():
        method = PAPER_ROWS[int(r["iul"])]
        ax_p.plot([x for x, _ in cols.values()], [r[c] for c in cols], ls="--", marker="s", ms=3.5,
                  color=colour(method), label=f"paper: {LABELS[method]}")
    for method, g in runs.groupby("method", sort=False):
        s = g.groupby("fraction")["accuracy"].agg(["mean", "std"]).reset_index()
        x = 100 * s["fraction"]
        ax_o.plot(x, 100 * s["mean"], marker="o", ms=3.5, color=colour(method),
                  label=f"ours: {LABELS.get(method, method)}")
        if g["seed"].nunique() > 1:
            ax_o.fill_between(x, 100 * (s["mean"] - s["std"]), 100 * (s["mean"] + s["std"]), color=colour(method),
                              alpha=0.15, lw=0)
    ax_p.set_title("paper: CIFAR-10, ResNet-18 (Table 2)", fontsize=9)
    if not same:
        ax_o.set_title(f"ours: {dataset} (a different dataset), mean ± std over seeds", fontsize=9)
    for ax in {ax_p, ax_o}:
        ax.set_xlabel("labeled images (% of the pool)")
        ax.set_ylabel("test accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("MI-AOD Table 2: IUL for active image classification", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)


def write(run_files, out_dir) -> list[Path]:
    runs = read_runs(run_files)
    table = build_table(runs)
    out_dir = Path(out_dir)
    plot(runs, out_dir / "miaod_table2.png")
    caption = ("Test accuracy (%) vs labeled proportion. The paper's rows: random selection, the classifier trained "
               "without / with IUL (two adversarial heads, max/min discrepancy steps). Ours: the same two rows, plus "
               "entropy selection (no IUL) and selection by the heads' discrepancy (IUL), mean ± std over seeds; "
               "on the digits the numbers are a CPU analog, comparable in trend only. Per seed: miaod_table2_runs.csv.")
    return [write_csv(table, out_dir / "miaod_table2.csv"), write_csv(runs, out_dir / "miaod_table2_runs.csv"),
            write_markdown(markdown_table(table, "MI-AOD Table 2: IUL for active image classification", caption),
                           out_dir / "miaod_table2.md"), out_dir / "miaod_table2.png"]
