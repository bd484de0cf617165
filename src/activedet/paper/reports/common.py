"""Shared pieces of the paper reports: the published numbers, mean ± std cells, Markdown, atomic writes."""
from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd

from ...io import InputError, atomic_path, write_text
from ..tables import PAPER_DIR

# Our registered strategy names -> the method names of the published CSVs.
PAPER_METHOD = {"miaod": "mi_aod"}
PAPER_LABEL = {"mi_aod": "MI-AOD", "random": "Random", "entropy": "Entropy", "coreset": "Core-set", "cdal": "CDAL",
               "ll4al": "LL4AL", "mgral": "MGRAL", "ebal": "EBAL"}
# One colour per method across every panel and figure (matplotlib's tab10 order).
_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
            "#17becf")
_FIXED = {"random": 7, "entropy": 1, "coreset": 2, "mi_aod": 3, "cdal": 4, "ll4al": 5, "mgral": 0, "ebal": 6}


def label(method: str) -> str:
    """A strategy or published method as the papers name it (variants keep their own name)."""
    name = PAPER_METHOD.get(method, method)
    return PAPER_LABEL.get(name, method)


def colour(method: str) -> str:
    """Stable colour of a method: fixed for the papers' methods, by name hash (stable across runs) for others."""
    name = PAPER_METHOD.get(method, method)
    if name in _FIXED:
        return _PALETTE[_FIXED[name]]
    return _PALETTE[sum(map(ord, name)) % len(_PALETTE)]


def read_paper(name: str) -> tuple[pd.DataFrame, str]:
    """A published CSV of ``paper_numbers/`` and its first comment line (where the numbers come from)."""
    path = PAPER_DIR / name
    lines = path.read_text(encoding="utf-8").splitlines()
    note = lines[0].lstrip("# ").strip() if lines and lines[0].startswith("#") else ""
    return pd.read_csv(path, comment="#"), note


_COLUMN = re.compile(r"^([pn])(\d+(?:\.\d+)?)$")


def value_columns(df: pd.DataFrame) -> dict[str, tuple[float, str]]:
    """Columns holding values: ``p5.0`` -> (5.0, 'percent'), ``n1000`` -> (1000, 'images')."""
    out = {}
    for c in df.columns:
        m = _COLUMN.match(str(c))
        if m:
            out[c] = (float(m.group(2)), "percent" if m.group(1) == "p" else "images")
    return out


def mean_std_cell(mean: float, std: float, digits: int = 1) -> str:
    if mean != mean:
        return ""
    return f"{mean:.{digits}f}" if std != std else f"{mean:.{digits}f} ± {std:.{digits}f}"


def mean_std(values) -> tuple[float, float, int]:
    """Mean, sample std (NaN for fewer than two values) and count, ignoring NaN."""
    v = pd.Series(values, dtype=float).dropna()
    if v.empty:
        return float("nan"), float("nan"), 0
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else float("nan"), len(v)


def seeds_label(n: int) -> str:
    return f"{n} seed{'s' * (n != 1)}"


def markdown_table(df: pd.DataFrame, title: str, caption: str = "", level: str = "##") -> str:
    """A Markdown table of ``df`` (columns that are empty everywhere dropped) under a heading."""
    cols = [c for c in df.columns if df[c].astype(str).replace({"nan": "", "None": ""}).ne("").any()]

    def cell(v) -> str:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return ""
        return str(v).replace("|", "\\|")

    head = "| " + " | ".join(map(str, cols)) + " |\n|" + "---|" * len(cols) + "\n"
    body = "".join("| " + " | ".join(cell(r[c]) for c in cols) + " |\n" for _, r in df.iterrows())
    return f"{level} {title}\n\n" + (f"{caption}\n\n" if caption else "") + head + body


def write_csv(df: pd.DataFrame, path: str | Path) -> Path:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, float_format="%.6g")
    return Path(path)


def write_markdown(text: str, path: str | Path) -> Path:
    write_text(path, text if text.endswith("\n") else text + "\n")
    return Path(path)


def save_figure(fig, path: str | Path) -> Path:
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return Path(path)


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend (jobs have no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def read_curves(path: str | Path) -> pd.DataFrame:
    """curves.csv of an experiment (the report step writes it), with the columns the reports read checked."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: curves file not found (the report step writes it)")
    try:
        df = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: not a readable CSV ({str(e).splitlines()[0]})") from None
    missing = [c for c in ("strategy", "seed", "cycle", "n_labeled", "fraction", "map50") if c not in df.columns]
    if missing:
        raise InputError(f"{path}: lacks the columns {missing} (write it with `python -m activedet report`)")
    if df.empty:
        raise InputError(f"{path}: no rows")
    return df
