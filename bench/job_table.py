"""Wall and CPU seconds per kind of job of a finished experiment, from its Snakemake benchmark files.

    python -m bench.job_table results/<experiment> --out job_seconds.csv [--seeds 0 1] [--strategies random ...]

Every rule writes a benchmark TSV (columns ``s`` wall seconds, ``cpu_time`` CPU seconds); the kind of job is
the file's stem with record numbers and twins' file names dropped (``lookup_record3`` -> ``lookup_record``,
``share_twin_model.pt`` -> ``share_twin``), the shared cycle-0 job
(``initial/seed<s>/benchmark.tsv``) is ``train_initial+evaluate``, the 100%-labeled reference
(``reference/seed<s>/benchmark.tsv``) is ``reference``, a paper experiment's per-run files
(``paper/table2/<method>/seed<s>.tsv``) are ``table2 run``, and a rule's single file elsewhere
(``checks/check_dataset.tsv``, ``pretrained/...``) keeps its stem. ``--seeds`` keeps the jobs of those seeds
(a ``seed<s>`` folder or ``seed<s>.tsv`` in the path) and the jobs of no seed (dataset, pre-training, report):
what one run of those seeds costs when several runs share the experiment's folder. ``--strategies`` likewise
keeps the jobs of those strategies (a ``runs/<strategy>/`` folder) and the jobs of none (dataset, pre-training,
the shared cycle 0, report): what a run without the others would cost, e.g. the default's eight strategies out of
an experiment that also ran a variant.
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path

import pandas as pd


def kind_of(path: Path) -> str:
    if path.name == "benchmark.tsv":
        top = path.parent.parent.name
        return {"initial": "train_initial+evaluate", "reference": "reference"}.get(top, path.parent.name)
    parts = path.parts
    if "paper" in parts[:-2] and path.parent.name != "benchmarks":
        # one file per run of a paper experiment (paper/table2/<method>/seed<s>.tsv,
        # paper/fig7/<strategy>/seed<s>/cycle<c>.tsv): named by its experiment's folder
        last_paper = len(parts) - 1 - parts[::-1].index("paper")
        return f"{parts[last_paper + 1]} run"
    # one file per record (lookup_record3) or per copied file of a twin (share_twin_model.pt): one kind
    return re.sub(r"^share_twin_.+$", "share_twin", re.sub(r"^lookup_record\d+$", "lookup_record", path.stem))


def seed_of(path: Path) -> int | None:
    """The seed a job's benchmark file belongs to (``.../seed<s>/...`` or ``seed<s>.tsv``); None for shared jobs."""
    found = [int(m.group(1)) for part in path.parts for m in [re.fullmatch(r"seed(\d+)(?:\.tsv)?", part)] if m]
    return found[-1] if found else None


def strategy_of(path: Path) -> str | None:
    """The strategy (or variant) a job's benchmark file belongs to (``runs/<strategy>/...``); None for the rest."""
    parts = path.parts
    return parts[1] if len(parts) > 2 and parts[0] == "runs" else None


def job_table(exp: Path, seeds: list[int] | None = None, strategies: list[str] | None = None) -> pd.DataFrame:
    """One row per kind of job: jobs, wall seconds, CPU seconds; a last row ``total``. With ``seeds``: only
    those seeds' jobs and the jobs of no seed; with ``strategies``: only those strategies' jobs and the jobs of
    none."""
    rows = []
    for path in sorted(Path(exp).rglob("*.tsv")):
        rel = path.relative_to(exp)
        if seeds is not None and seed_of(rel) not in (None, *seeds):
            continue
        if strategies is not None and strategy_of(rel) not in (None, *strategies):
            continue
        df = pd.read_csv(path, sep="\t")
        if not {"s", "cpu_time"} <= set(df.columns) or df.empty:
            continue
        rows.append({"step": kind_of(path), "wall_s": float(df["s"].iloc[-1]), "cpu_s": float(df["cpu_time"].iloc[-1])})
    if not rows:
        raise SystemExit(f"error: {exp}: no Snakemake benchmark files")
    t = pd.DataFrame(rows).groupby("step").agg(jobs=("wall_s", "size"), wall_s=("wall_s", "sum"),
                                               cpu_s=("cpu_s", "sum")).reset_index()
    total = pd.DataFrame([{"step": "total", "jobs": int(t["jobs"].sum()), "wall_s": t["wall_s"].sum(),
                           "cpu_s": t["cpu_s"].sum()}])
    return pd.concat([t, total], ignore_index=True).round(1)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.job_table", description=__doc__.split("\n")[0])
    ap.add_argument("experiment_dir")
    ap.add_argument("--out", required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=None, help="only these seeds' jobs (and those of no seed)")
    ap.add_argument("--strategies", nargs="+", default=None,
                    help="only these strategies' jobs (runs/<strategy>/) and those of none")
    args = ap.parse_args(argv)
    job_table(Path(args.experiment_dir), args.seeds, args.strategies).to_csv(args.out, index=False)
    print(Path(args.out).read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
