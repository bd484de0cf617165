"""Issue 20 item 4: how much of a finished run's job time lies outside the jobs' in-process work.

    python -m bench.job_overhead results/<experiment> --out job_overhead.csv

Every job writes a Snakemake benchmark file (wall seconds ``s``) and, for the steps that compute something, a
record of its own in-process seconds: ``train.json`` and ``eval_train.json`` ``seconds`` (the training loop;
reading the images, ``load_seconds``, is not in it), ``metrics.json`` ``seconds`` (evaluation, from loading the
model and images to the metrics), ``score.json`` ``total_seconds`` (likewise), ``selected.json`` ``seconds``,
``lookup/record<n>.json`` ``seconds`` (the proxy's training), ``agent_compute.json`` ``total_seconds``,
``pretrain.json`` ``seconds``. The rest of a job's wall time is outside that work: the interpreter, imports,
argument and params parsing, Snakemake's job start, and what the record leaves out. A job
without a record (merges, shared copies, dataset checks, the stop-set predictions, reports) counts as outside
as a whole; for ``predict_stop_set`` that overstates it by its forward pass over the stop set.

One row per kind of job (``bench.job_table``'s kinds): jobs, wall, in-process and outside seconds, the outside
share, and the median outside seconds of one job. The ``total`` row's ``outside_share`` is item 4's figure
(goal <= 0.08). Two ``probe`` rows measure here, in fresh interpreters, what a job pays before its work
starts: the CPU seconds of ``python -m activedet select --help`` (the CLI, no torch) and of importing the
CLI with torch and torchvision (what every model-reading job imports); median of ``--probes`` runs.
Wall seconds of a run under load inflate the work and the outside time alike, so the shares hold; the
probes are CPU seconds.
"""
from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
from pathlib import Path

import pandas as pd

from .end_to_end import json_seconds
from .job_table import kind_of

# Kind of job -> the files (relative to its run folder) and keys holding its in-process seconds.
RECORDS: dict[str, list[tuple[str, str]]] = {
    "train": [("train.json", "seconds")],
    "eval_train": [("eval_train.json", "seconds")],
    "evaluate": [("metrics.json", "seconds")],
    "score": [("score.json", "total_seconds")],
    "select": [("selected.json", "seconds")],
    "train_agent": [("agent_compute.json", "total_seconds")],
    "lookup_record": [("lookup/record{n}.json", "seconds")],
    "train_initial+evaluate": [("train.json", "seconds"), ("metrics.json", "seconds")],
    "reference": [("train.json", "seconds"), ("metrics.json", "seconds")],
    "pretrained": [("pretrain.json", "seconds")],
}
GOAL = 0.08


def inprocess_seconds(tsv: Path, kind: str) -> float | None:
    """The job's own record of its in-process seconds, or None when the kind keeps none (or it is missing)."""
    if kind not in RECORDS:
        return None
    folder = tsv.parent if tsv.name == "benchmark.tsv" else tsv.parent.parent
    number = re.search(r"(\d+)$", tsv.stem)
    total = 0.0
    for name, key in RECORDS[kind]:
        path = folder / name.format(n=number.group(1) if number else "")
        value = json_seconds(path, key)
        if value is None:
            return None
        total += value
    return total


def overhead_table(exp: Path) -> pd.DataFrame:
    """Rows per kind of job and a ``total`` row; columns as the module docstring says."""
    jobs = []
    for tsv in sorted(Path(exp).rglob("*.tsv")):
        df = pd.read_csv(tsv, sep="\t")
        if "s" not in df.columns or df.empty:
            continue
        kind = kind_of(tsv)
        wall = float(df["s"].iloc[-1])
        work = inprocess_seconds(tsv, kind)
        recorded = work is not None
        # A record can exceed the job's wall by float rounding of the benchmark's seconds: clip at the wall.
        work = min(work, wall) if recorded else 0.0
        jobs.append({"step": kind, "wall_s": wall, "inprocess_s": work, "outside_s": wall - work,
                     "recorded": recorded})
    if not jobs:
        raise SystemExit(f"error: {exp}: no Snakemake benchmark files")
    j = pd.DataFrame(jobs)
    t = j.groupby("step").agg(jobs=("wall_s", "size"), wall_s=("wall_s", "sum"), inprocess_s=("inprocess_s", "sum"),
                              outside_s=("outside_s", "sum"), outside_per_job_s=("outside_s", "median"),
                              recorded=("recorded", "all")).reset_index()
    total = {"step": "total", "jobs": len(j), "wall_s": j["wall_s"].sum(), "inprocess_s": j["inprocess_s"].sum(),
             "outside_s": j["outside_s"].sum(), "outside_per_job_s": j["outside_s"].median(),
             "recorded": j["recorded"].all()}
    t = pd.concat([t.sort_values("outside_s", ascending=False), pd.DataFrame([total])], ignore_index=True)
    t["outside_share"] = t["outside_s"] / t["wall_s"]
    return t


def probe_cpu_seconds(code: list[str], repeats: int) -> float:
    """Median CPU seconds (user + system of the child) of running ``python <code>`` in a fresh interpreter."""
    import resource

    times = []
    for _ in range(repeats):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run([sys.executable, *code], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        times.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return statistics.median(times)


PROBES = {
    "probe: activedet CLI start (select --help, no torch)": ["-m", "activedet", "select", "--help"],
    "probe: activedet CLI + torch + torchvision imports": ["-c", "import activedet.cli, torch, torchvision"],
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.job_overhead", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("experiment_dir")
    ap.add_argument("--out", required=True)
    ap.add_argument("--probes", type=int, default=5, help="fresh interpreters per start-up probe (0: none)")
    args = ap.parse_args(argv)
    table = overhead_table(Path(args.experiment_dir))
    if args.probes > 0:
        probes = pd.DataFrame([{"step": name, "outside_per_job_s": probe_cpu_seconds(code, args.probes)}
                               for name, code in PROBES.items()])
        table = pd.concat([table, probes], ignore_index=True)
    table.round(4).to_csv(args.out, index=False)
    print(table.round(3).to_string(index=False))
    share = float(table.loc[table["step"] == "total", "outside_share"].iloc[0])
    print(f"outside the jobs' in-process work: {share:.1%} of the job time (goal <= {GOAL:.0%}: "
          f"{'met' if share <= GOAL else 'NOT met'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
