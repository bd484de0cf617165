"""Learning curves beside the published ones: MI-AOD Fig. 5 (a, b, c) and MGRAL Fig. 3.

Our curves are mean ± std over seeds of the experiment's ``curves.csv``. They are drawn into
the paper's panel only when the experiment runs that panel's setting (``paper_reports.fig5_setting``);
otherwise they get a panel of their own, titled with our dataset, because numbers on
another dataset are not comparable point by point - only the shapes and the ranking are.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ...io import InputError
from .common import (
    colour,
    label,
    markdown_table,
    mean_std,
    mean_std_cell,
    pyplot,
    read_curves,
    read_paper,
    save_figure,
    seeds_label,
    value_columns,
    write_csv,
    write_markdown,
)


@dataclass(frozen=True)
class PaperSource:
    """Rows of a published CSV: ``method_column`` names the method, or ``method`` with a row filter."""

    file: str
    label: str
    method_column: str = "method"
    method: str | None = None
    where: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Panel:
    title: str
    metric: str  # the curves.csv column our numbers come from
    ylabel: str
    unit: str  # percent (of the pool) | images
    sources: tuple[PaperSource, ...]


PANELS: dict[str, Panel] = {
    "voc_retinanet": Panel("(a) PASCAL VOC07+12, RetinaNet-R50", "map50", "mAP@0.5 (%)", "percent",
                           (PaperSource("miaod_fig5_voc_retinanet.csv", "MI-AOD Fig. 5(a)"),)),
    "voc_ssd": Panel("(b) PASCAL VOC07+12, SSD300-VGG16", "map50", "mAP@0.5 (%)", "images",
                     (PaperSource("miaod_fig5_voc_ssd.csv", "MI-AOD Fig. 5(b)"),)),
    "coco_retinanet": Panel("(c) MS COCO, RetinaNet-R50", "coco_ap", "AP (%)", "percent",
                            (PaperSource("miaod_fig5_coco_retinanet.csv", "MI-AOD Fig. 5(c)"),)),
}
# MGRAL's Fig. 3 (VOC, SSD): the paper's numbers for its own curve are Table III's 200-record row
# (its VOC setting); the baselines of the same setting (1k + 1k per cycle) are MI-AOD's Fig. 5(b).
MGRAL_PANELS: dict[str, Panel] = {
    "voc_ssd": Panel("PASCAL VOC07+12, SSD300 (1k + 1k per cycle)", "map50", "mAP@0.5 (%)", "images",
                     (PaperSource("mgral_table3_lookup_size.csv", "MGRAL Table III, 200 records",
                                  method_column="", method="mgral", where={"records": 200}),
                      PaperSource("miaod_fig5_voc_ssd.csv", "MI-AOD Fig. 5(b)"))),
}
SETTINGS = ("auto", "none", *PANELS)


# The paper configurations (configs/paper/, params `paper_config`) and the panel each reproduces:
# MGRAL's VOC and COCO settings are MI-AOD's SSD and COCO ones.
PAPER_CONFIG_PANEL = {"voc_retinanet": "voc_retinanet", "voc_ssd": "voc_ssd", "coco_retinanet": "coco_retinanet",
                      "voc_mgral": "voc_ssd", "coco_mgral": "coco_retinanet"}


def resolve_setting(setting: str, paper_config: str | None, dataset_format: str, dataset_name: str,
                    arch: str) -> str | None:
    """The paper panel an experiment reproduces, or None (e.g. the digit scenes).

    ``auto``: the panel of ``paper_config`` when one is set; else PASCAL VOC data (``dataset.format:
    voc``) by its detector (SSD or RetinaNet) and MS COCO by a dataset name starting with ``coco``;
    anything else has no paper panel.
    """
    if setting not in SETTINGS:
        raise InputError(f"paper_reports.fig5_setting: unknown setting {setting!r} (known: {', '.join(SETTINGS)})")
    if setting == "none":
        return None
    if setting != "auto":
        return setting
    if paper_config in PAPER_CONFIG_PANEL:
        return PAPER_CONFIG_PANEL[paper_config]
    if dataset_format == "voc":
        return "voc_ssd" if "ssd" in arch.lower() else "voc_retinanet"
    if dataset_format == "coco" and dataset_name.lower().startswith("coco") and "ssd" not in arch.lower():
        return "coco_retinanet"
    return None


def paper_curves(panel: Panel) -> pd.DataFrame:
    """The panel's published points: method, source, x, unit, value (%)."""
    rows = []
    for src in panel.sources:
        df, _ = read_paper(src.file)
        for key, value in src.where.items():
            df = df[df[key] == value]
        for _, r in df.iterrows():
            method = src.method or str(r[src.method_column])
            for col, (x, unit) in value_columns(df).items():
                if pd.notna(r[col]):
                    rows.append({"method": method, "source": src.label, "x": x, "unit": unit, "value": float(r[col])})
    return pd.DataFrame(rows, columns=["method", "source", "x", "unit", "value"])


def our_curves(curves: pd.DataFrame, metric: str, unit: str) -> pd.DataFrame:
    """Ours per strategy and labeled size: mean, std and number of seeds, in % (x in % of the pool or images)."""
    if metric not in curves.columns:
        raise InputError(f"curves.csv has no column {metric!r}")
    rows = []
    for (strategy, n_labeled), g in curves.groupby(["strategy", "n_labeled"], sort=False):
        m, s, n = mean_std(100 * g[metric])
        x = float(n_labeled) if unit == "images" else round(100 * float(g["fraction"].iloc[0]), 4)
        rows.append({"method": strategy, "x": x, "unit": unit, "mean": m, "std": s, "n_seeds": n})
    return pd.DataFrame(rows, columns=["method", "x", "unit", "mean", "std", "n_seeds"])


def snap(ours: pd.DataFrame, paper_x: list[float], tolerance: float = 0.1) -> pd.DataFrame:
    """Our labeled sizes moved onto the paper's nominal ones within ``tolerance`` (827 of 16551 images is
    4.997%, the paper's 5%); the exact value stays in ``x_exact``."""
    px = np.asarray(paper_x, dtype=float)
    snapped = []
    for x in ours["x"]:
        k = int(np.abs(px - x).argmin()) if len(px) else -1
        snapped.append(float(px[k]) if k >= 0 and abs(px[k] - x) <= tolerance else x)
    return ours.assign(x_exact=ours["x"], x=snapped)


def _x_label(x: float, unit: str) -> str:
    return f"{x:g}%" if unit == "percent" else f"{x:g}"


def _wide(points: pd.DataFrame, value_cell) -> pd.DataFrame:
    """One row per (method, source), one column per x."""
    xs = sorted(points["x"].unique())
    unit = points["unit"].iloc[0]
    rows = []
    for (method, source), g in points.groupby(["method", "source"], sort=False):
        row = {"method": label(method), "source": source}
        by_x = {r["x"]: r for _, r in g.iterrows()}
        for x in xs:
            row[_x_label(x, unit)] = value_cell(by_x[x]) if x in by_x else ""
        rows.append(row)
    return pd.DataFrame(rows)


@dataclass
class CurvesReport:
    long: pd.DataFrame  # every plotted point
    markdown: str


def build(curves: pd.DataFrame, panels: dict[str, Panel], setting: str | None, dataset_label: str,
          title: str, caption: str) -> CurvesReport:
    """Long table and Markdown: each paper panel, with ours inside it when the setting matches, else apart."""
    long_rows, parts = [], [f"## {title}\n\n{caption}\n"]
    for name, panel in panels.items():
        paper = paper_curves(panel)
        paper_cells = paper.assign(cell=paper["value"].map(lambda v: f"{v:.2f}"))
        for _, r in paper.iterrows():
            long_rows.append({"panel": name, "dataset": panel.title, "source": r["source"], "method": r["method"],
                              "x": r["x"], "unit": r["unit"], "metric": panel.ylabel, "mean": r["value"],
                              "std": float("nan"), "n_seeds": float("nan")})
        table = _wide(paper_cells, lambda r: r["cell"])
        if name == setting:
            ours = snap(our_curves(curves, panel.metric, panel.unit), sorted(paper["x"].unique()))
            ours = ours.assign(source=[f"ours ({seeds_label(n)})" for n in ours["n_seeds"]])
            long_rows += [{"panel": name, "dataset": panel.title, "source": r["source"], "method": r["method"],
                           "x": r["x"], "x_exact": r["x_exact"], "unit": r["unit"], "metric": panel.ylabel,
                           "mean": r["mean"], "std": r["std"], "n_seeds": r["n_seeds"]} for _, r in ours.iterrows()]
            both = pd.concat([paper_cells,
                              ours.assign(cell=[mean_std_cell(m, s) for m, s in zip(ours["mean"], ours["std"])])])
            table = _wide(both, lambda r: r["cell"])
        x_what = "labeled images (% of the pool)" if panel.unit == "percent" else "labeled images"
        parts.append(markdown_table(table, panel.title + (" - ours beside the paper" if name == setting else ""),
                                    f"{panel.ylabel}; x = {x_what}.", level="###"))
    if setting is None:
        ours = our_curves(curves, "map50", "percent")
        ours = ours.assign(source=[f"ours ({seeds_label(n)})" for n in ours["n_seeds"]])
        long_rows += [{"panel": "ours", "dataset": dataset_label, "source": r["source"], "method": r["method"],
                       "x": r["x"], "unit": r["unit"], "metric": "mAP@0.5 (%)", "mean": r["mean"], "std": r["std"],
                       "n_seeds": r["n_seeds"]} for _, r in ours.iterrows()]
        table = _wide(ours.assign(cell=[mean_std_cell(m, s) for m, s in zip(ours["mean"], ours["std"])]),
                      lambda r: r["cell"])
        parts.append(markdown_table(
            table, f"Ours: {dataset_label} (a different dataset from the paper's)",
            "mAP@0.5 (%, VOC07 11-point), mean ± std over seeds; x = labeled images (% of the pool). "
            "Compare the ranking and the shape of the curves with the paper's, not the values.", level="###"))
    return CurvesReport(pd.DataFrame(long_rows), "\n".join(parts))


def plot(long: pd.DataFrame, panels: dict[str, Panel], setting: str | None, dataset_label: str, title: str, path):
    plt = pyplot()
    names = list(panels) + (["ours"] if setting is None else [])
    fig, axes = plt.subplots(1, len(names), figsize=(4.4 * len(names), 3.9), dpi=110, squeeze=False)
    for ax, name in zip(axes[0], names):
        pts = long[long["panel"] == name]
        for (source, method), g in pts.groupby(["source", "method"], sort=False):
            g = g.sort_values("x")
            ours = source.startswith("ours")
            legend = label(method) + (" (ours)" if ours else "")
            style = dict(color=colour(method), marker="o" if ours else "s", ms=3.5, lw=1.6 if ours else 1.2,
                         ls="-" if ours else "--")
            if len(g) == 1:
                style["ls"] = "none"
            ax.plot(g["x"], g["mean"], label=legend, **style)
            if ours and g["std"].notna().any():
                ax.fill_between(g["x"], g["mean"] - g["std"].fillna(0), g["mean"] + g["std"].fillna(0),
                                color=colour(method), alpha=0.15, lw=0)
        if name == "ours":
            ax.set_title(f"ours: {dataset_label}\n(different dataset; mean ± std over seeds)", fontsize=9)
            ax.set_xlabel("labeled images (% of the pool)")
            ax.set_ylabel("mAP@0.5 (%)")
        else:
            panel = panels[name]
            ax.set_title(panel.title + ("\nours (solid) beside the paper (dashed)" if name == setting
                                        else "\npaper's numbers"), fontsize=9)
            ax.set_xlabel("labeled images (% of the pool)" if panel.unit == "percent" else "labeled images")
            ax.set_ylabel(panel.ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)


def write(curves_csv, out_dir, stem: str, panels: dict[str, Panel], setting: str | None, dataset_label: str,
          title: str, caption: str) -> list[Path]:
    curves = read_curves(curves_csv)
    if setting is not None and setting not in panels:
        setting = None  # e.g. a COCO experiment's MGRAL Fig. 3 (VOC only): ours get a panel of their own
    report = build(curves, panels, setting, dataset_label, title, caption)
    out_dir = Path(out_dir)
    plot(report.long, panels, setting, dataset_label, title, out_dir / f"{stem}.png")
    return [write_csv(report.long, out_dir / f"{stem}.csv"), write_markdown(report.markdown, out_dir / f"{stem}.md"),
            out_dir / f"{stem}.png"]


def write_fig5(curves_csv, out_dir, setting: str | None, dataset_label: str) -> list[Path]:
    return write(curves_csv, out_dir, "miaod_fig5", PANELS, setting, dataset_label,
                 "MI-AOD Fig. 5: active object detection learning curves",
                 "The paper's numbers (MI-AOD row of (a) exact from the authors' README, the rest read off the "
                 "figure to about ±0.3; some baselines only at the last cycle) and ours, mean ± std over seeds.")


def write_mgral_fig3(curves_csv, out_dir, setting: str | None, dataset_label: str) -> list[Path]:
    return write(curves_csv, out_dir, "mgral_fig3", MGRAL_PANELS, setting, dataset_label,
                 "MGRAL Fig. 3: learning curves of all strategies",
                 "MGRAL's curve from its Table III (200 lookup-table records, its VOC setting); the baselines of the "
                 "same setting from MI-AOD Fig. 5(b) (MGRAL's own Fig. 3 values are not published as numbers). "
                 "Ours: every strategy of the experiment, mean ± std over seeds.")
