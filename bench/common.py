"""What every bench section shares: the run context, timing with repeats, rows, the CSV and the table.

A row is one figure: ``value`` is the median over ``repeats`` runs, ``spread`` their interquartile
range (``min``/``max`` beside it). A row measured against a reference in the same run carries the
reference's median and the ratio; where the runs were paired (ours and the reference interleaved, so
machine noise hits both alike) the ratio is the median of the per-pair ratios, with its own IQR.
A ``goal`` such as ``>= 0.8`` applies to the ratio when there is one, else to the value.
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "results" / "bench" / "bench.csv"
QUICK_OUT = ROOT / "results" / "bench" / "bench_quick.csv"

COLUMNS = ["section", "name", "value", "unit", "spread", "min", "max", "repeats", "reference", "reference_value",
           "ratio", "ratio_spread", "goal", "met", "device", "machine", "note"]
KEY = ["section", "name", "device"]  # a re-run replaces the rows with the same key and keeps the others

_GOAL_OPS = {">=": lambda a, b: a >= b, "<=": lambda a, b: a <= b}


def describe(values: Sequence[float]) -> dict:
    """Median, interquartile range, min and max of repeated measurements (NaN-free input)."""
    v = np.asarray([float(x) for x in values], dtype=float)
    if len(v) == 0:
        raise ValueError("no measurements")
    q1, q3 = np.percentile(v, [25, 75])
    return {"value": float(np.median(v)), "spread": float(q3 - q1), "min": float(v.min()), "max": float(v.max()),
            "repeats": len(v)}


def parse_goal(goal: str) -> tuple[Callable[[float, float], bool], float]:
    """'>= 0.8' -> (operator, 0.8)."""
    op, _, number = goal.strip().partition(" ")
    if op not in _GOAL_OPS:
        raise ValueError(f"goal {goal!r}: expected '>= x' or '<= x'")
    return _GOAL_OPS[op], float(number)


def goal_met(goal: str, x: float) -> bool | None:
    if not goal or x is None or not math.isfinite(x):
        return None
    op, threshold = parse_goal(goal)
    return bool(op(x, threshold))


def _proc_status_kib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return float(line.split()[1])
    raise OSError(f"/proc/self/status has no {field}")


def peak_memory(fn: Callable[[], object], device) -> tuple[object, float]:
    """(``fn()``, the peak memory in MiB while it ran: the process's resident set on CPU, torch's
    allocated bytes on CUDA).

    CPU: ``VmHWM`` (the peak resident set) on Linux, first reset to the current RSS by writing 5 to
    ``/proc/self/clear_refs`` (proc(5)); NaN where that is unavailable. It includes what the process held
    before (interpreter, model, cached images), so growth with the pool shows as growth of the peak. No library
    gives a resettable in-process RSS peak, hence these few lines.
    """
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        out = fn()
        torch.cuda.synchronize(device)
        return out, torch.cuda.max_memory_allocated(device) / 2 ** 20
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return fn(), float("nan")
    out = fn()
    return out, _proc_status_kib("VmHWM") / 1024


def loglog_slope(sizes: Sequence[float], seconds: Sequence[float]) -> float:
    """Least-squares exponent k of seconds ~ size**k (the growth order of a scaling curve)."""
    x, y = np.log(np.asarray(sizes, dtype=float)), np.log(np.asarray(seconds, dtype=float))
    return float(np.polyfit(x, y, 1)[0])


def machine_description(device) -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    text = f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} with {torch.get_num_threads()} threads"
    if device.type == "cuda":
        text += f", {torch.cuda.get_device_name(device)}"
    return text


@dataclass
class Context:
    """Settings and shared state of one bench run."""

    device: "torch.device"  # noqa: F821 (torch is imported lazily)
    quick: bool
    out: Path
    params: dict
    experiment: Path | None  # a finished experiment (results/<experiment>) read for items 2 and 6, or None
    repeats: int
    machine: str = ""
    rows: list[dict] = field(default_factory=list)
    _scratch: tempfile.TemporaryDirectory | None = None
    _cache: dict = field(default_factory=dict)

    @property
    def device_name(self) -> str:
        if self.device.type == "cuda":
            import torch

            return f"cuda ({torch.cuda.get_device_name(self.device)})"
        return "cpu"

    @property
    def scratch(self) -> Path:
        """Scratch folder inside the output folder, removed when the run ends."""
        if self._scratch is None:
            self.out.parent.mkdir(parents=True, exist_ok=True)
            self._scratch = tempfile.TemporaryDirectory(prefix=".scratch-", dir=self.out.parent)
        return Path(self._scratch.name)

    def close(self) -> None:
        if self._scratch is not None:
            self._scratch.cleanup()
            self._scratch = None

    def sync(self) -> None:
        if self.device.type == "cuda":
            import torch

            torch.cuda.synchronize(self.device)

    def time(self, fn: Callable[[], object]) -> float:
        """Wall seconds of one call, with the GPU's queue drained before and after."""
        self.sync()
        t = time.perf_counter()
        fn()
        self.sync()
        return time.perf_counter() - t

    def paired(self, fns: dict[str, Callable[[], object]], repeats: int | None = None, warmup: int | None = None
               ) -> dict[str, list[float]]:
        """Seconds per call of each function, run interleaved ``repeats`` times after ``warmup`` rounds
        (default one, none with ``--quick``)."""
        if warmup is None:
            warmup = 0 if self.quick else 1
        out: dict[str, list[float]] = {name: [] for name in fns}
        for r in range(warmup + (repeats or self.repeats)):
            for name, fn in fns.items():
                s = self.time(fn)
                if r >= warmup:
                    out[name].append(s)
        return out

    def add(self, section: str, name: str, values: float | Sequence[float], unit: str, *, reference: str = "",
            reference_values: float | Sequence[float] | None = None, ratio_values: Sequence[float] | None = None,
            goal: str = "", note: str = "") -> dict:
        """Record one figure (``values``: one number or the repeats); print it; return the row."""
        values = [values] if np.ndim(values) == 0 else list(values)
        row = {"section": section, "name": name, **describe(values), "unit": unit, "reference": reference,
               "reference_value": float("nan"), "ratio": float("nan"), "ratio_spread": float("nan"),
               "goal": goal, "device": self.device_name, "machine": self.machine, "note": note}
        if reference_values is not None:
            ref = [reference_values] if np.ndim(reference_values) == 0 else list(reference_values)
            row["reference_value"] = describe(ref)["value"]
            if ratio_values is None and row["reference_value"] != 0:
                row["ratio"] = row["value"] / row["reference_value"]
        if ratio_values is not None:
            r = describe(ratio_values)
            row["ratio"], row["ratio_spread"] = r["value"], r["spread"]
        row["met"] = goal_met(goal, row["ratio"] if math.isfinite(row["ratio"]) else row["value"])
        self.rows.append(row)
        print(format_row(row), flush=True)
        return row

    def unavailable(self, section: str, name: str, why: str) -> None:
        """A figure that cannot be measured in this checkout or run, with the reason."""
        row = {"section": section, "name": name, "value": float("nan"), "unit": "", "spread": float("nan"),
               "min": float("nan"), "max": float("nan"), "repeats": 0, "reference": "",
               "reference_value": float("nan"), "ratio": float("nan"), "ratio_spread": float("nan"), "goal": "",
               "met": None, "device": self.device_name, "machine": self.machine, "note": f"not available: {why}"}
        self.rows.append(row)
        print(format_row(row), flush=True)


def _num(x: float) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return ""
    return f"{x:.4g}"


def format_row(row: dict) -> str:
    value = _num(row["value"]) + (f" ± {_num(row['spread'])}" if row["repeats"] > 1 else "")
    text = f"[{row['section']}] {row['name']}: {value} {row['unit']}".rstrip()
    if row["reference"]:
        text += f" | {row['reference']}: {_num(row['reference_value'])}"
    if math.isfinite(row["ratio"]):
        text += f" | ratio {_num(row['ratio'])}"
    if row["goal"]:
        text += f" | goal {row['goal']}: {'met' if row['met'] else 'NOT met' if row['met'] is False else '-'}"
    if row["note"]:
        text += f"  ({row['note']})"
    return text


def write_csv(rows: list[dict], path: Path) -> "pd.DataFrame":  # noqa: F821
    """Merge ``rows`` into the CSV at ``path`` (same section, name and device replaced); atomic write."""
    import pandas as pd

    from activedet.io import atomic_path

    new = pd.DataFrame(rows, columns=COLUMNS)
    if path.is_file():
        old = pd.read_csv(path)
        if set(KEY) <= set(old.columns):
            keys = set(map(tuple, new[KEY].astype(str).to_numpy()))
            keep = [tuple(k) not in keys for k in old[KEY].astype(str).to_numpy()]
            new = pd.concat([old[keep].reindex(columns=COLUMNS), new], ignore_index=True)
        else:  # a CSV of the earlier single-file bench: its rows have no section; start afresh
            print(f"{path}: replacing rows in the old format (no 'section' column)")
    with atomic_path(path) as tmp:
        new.to_csv(tmp, index=False, float_format="%.6g")
    return new


def print_table(rows: list[dict]) -> None:
    import pandas as pd

    if not rows:
        return
    df = pd.DataFrame(rows)
    table = pd.DataFrame({
        "section": df["section"], "figure": df["name"],
        "value": [(_num(r.value) + (f" ± {_num(r.spread)}" if r.repeats > 1 else "") + f" {r.unit}").strip()
                  if r.repeats else r.note[:60] for r in df.itertuples()],
        "reference": [f"{r.reference}: {_num(r.reference_value)}" if r.reference else "" for r in df.itertuples()],
        "ratio": [_num(x) for x in df["ratio"]],
        "goal": [f"{g} {'ok' if m else 'no' if m is False else ''}".strip() if g else "" for g, m in
                 zip(df["goal"], df["met"])],
    })
    with pd.option_context("display.max_rows", None, "display.max_colwidth", 70, "display.width", 250):
        print(table.to_string(index=False))


def experiment_parser(prog: str, doc: str, strategy: str) -> argparse.ArgumentParser:
    """The arguments of every bench tool that reads a finished experiment: its folder, ``--strategy``,
    ``--threads`` (1, as the bench's published figures) and the CSV to write (``--out``)."""
    ap = argparse.ArgumentParser(prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("experiment", help="a finished experiment folder (results/<experiment>)")
    ap.add_argument("--strategy", default=strategy)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, required=True, help="CSV to write")
    return ap


def run_tool(run: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """``run(args)``, with a missing or malformed input (model, test set, pool) as ``error: <message>`` and
    exit status 2, not a traceback."""
    from activedet.io import InputError

    try:
        return run(args)
    except (InputError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
