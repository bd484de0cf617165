"""Item 6: wall time of ``snakemake --cores all`` split into training, scoring, selection, evaluation, bookkeeping.

Every job writes a Snakemake benchmark file (``benchmarks/*.tsv``, ``initial/seed*/benchmark.tsv``);
their seconds are job-seconds. Training and scoring are the in-process compute their jobs record
(``train.json`` seconds, ``score.json`` score_seconds); the rest of those jobs (interpreter start,
imports, reading images, writing files) is bookkeeping, with the merge jobs. The cycle-0 job of the
plain strategies also evaluates its model (``initial/seed*/metrics.json`` seconds: evaluation).
The wall time comes from the Snakemake log of the run: the jobs it ran are the benchmark files
written between its start and its end, and each category's wall share is its share of those
job-seconds (jobs run side by side on ``--cores``). ``--run-e2e`` runs the default workflow afresh
into ``<bench output>/e2e/`` and times it; otherwise the last finished run of the experiment is read.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

from .common import ROOT, Context
from .miaod import bench_seconds

SECTION = "6 end to end"
CATEGORIES = ("training", "scoring", "selection", "evaluation", "bookkeeping")
_STEM_CATEGORY = {"train": "training", "benchmark": "training", "score": "scoring", "select": "selection",
                  "evaluate": "evaluation", "merge": "bookkeeping", "export_for_annotation": "bookkeeping"}


def json_seconds(path: Path, key: str) -> float | None:
    """``key`` of the JSON record ``path`` as seconds, or None when the file or the key is missing (shared with
    ``bench.job_overhead``)."""
    if not path.is_file():
        return None
    value = json.loads(path.read_text()).get(key)
    return float(value) if value is not None else None


def job_seconds(exp: Path, since: float | None = None, until: float | None = None) -> dict[str, float]:
    """Job-seconds per category over the experiment's benchmark files (modified within [since, until])."""
    out: dict[str, float] = {c: 0.0 for c in CATEGORIES}
    for path in sorted(exp.rglob("*.tsv")):
        if path.parent.name != "benchmarks" and path.name != "benchmark.tsv":
            continue
        mtime = path.stat().st_mtime
        if (since is not None and mtime < since) or (until is not None and mtime > until):
            continue
        seconds = bench_seconds(path)
        category = _STEM_CATEGORY.get(path.stem, f"other: {path.stem}")
        folder = path.parent if path.name == "benchmark.tsv" else path.parent.parent
        compute = None
        if category == "training":
            compute = json_seconds(folder / "train.json", "seconds")
            if path.name == "benchmark.tsv":  # the shared cycle-0 job trains and evaluates
                evaluation = json_seconds(folder / "metrics.json", "seconds") or 0.0
                out["evaluation"] += evaluation
                seconds -= evaluation
        elif category == "scoring":
            compute = json_seconds(folder / "score.json", "score_seconds")
        if compute is not None:
            compute = min(compute, seconds)
            out[category] += compute
            out["bookkeeping"] += seconds - compute
        else:
            out[category] = out.get(category, 0.0) + seconds
    return out


def parse_log(path: Path) -> dict | None:
    """Start, elapsed seconds, command and job count of a finished Snakemake run's log; None if unfinished."""
    text = path.read_text(errors="replace")
    date = re.search(r"^\s*Date: (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)", text, re.M)
    elapsed = re.search(r"^Elapsed time: (?:(\d+) days?, )?(\d+):(\d\d):(\d\d(?:\.\d+)?)", text, re.M)
    if not date or not elapsed or "(100%) done" not in text:
        return None
    days, h, m, s = elapsed.groups()
    seconds = timedelta(days=int(days or 0), hours=int(h), minutes=int(m), seconds=float(s)).total_seconds()
    start = datetime.strptime(date.group(1), "%Y-%m-%d %H:%M:%S").timestamp()
    command = re.search(r"^\s*Command: (.*)$", text, re.M)
    total = re.search(r"^total\s+(\d+)", text, re.M)
    return {"start": start, "seconds": seconds, "command": command.group(1).strip() if command else "",
            "jobs": int(total.group(1)) if total else None, "path": str(path)}


def last_run_log(exp: Path, log_dir: Path) -> dict | None:
    """The latest finished Snakemake run whose window contains benchmark files of ``exp``."""
    for path in sorted(log_dir.glob("*.snakemake.log"), reverse=True):
        info = parse_log(path)
        if info is None:
            continue
        # Benchmark files are written as their job ends; a second of slack for the log's whole-second start.
        window = (info["start"] - 1, info["start"] + info["seconds"] + 1)
        if any(v > 0 for v in job_seconds(exp, *window).values()):
            info["window"] = window
            return info
    return None


def report(ctx: Context, exp: Path, run: dict | None, source: str) -> None:
    window = run.get("window", (None, None)) if run else (None, None)
    jobs = job_seconds(exp, *window)
    total = sum(jobs.values())
    if total <= 0:
        ctx.unavailable(SECTION, "wall time split", f"no benchmark files under {exp}")
        return
    if run is None:
        for category, seconds in jobs.items():
            ctx.add(SECTION, f"{category}: job-seconds", seconds, "s", reference="all jobs",
                    reference_values=total, note=f"{exp}; no Snakemake log of the run (ratio: share)")
        return
    wall = run["seconds"]
    where = f"{source}; {run['jobs']} jobs; `{run['command']}`"
    ctx.add(SECTION, "wall time of the run", wall, "s", note=where)
    ctx.add(SECTION, "job-seconds per wall second (jobs side by side)", total / wall, "", note=where)
    for category, seconds in jobs.items():
        ctx.add(SECTION, f"{category}: share of the wall time", wall * seconds / total, "s",
                reference="wall time", reference_values=wall, note=f"{seconds:.1f} job-seconds (ratio: share)")


def run_workflow(ctx: Context) -> tuple[Path, dict]:
    """Run the default workflow afresh into <bench output>/e2e (tiny params with --quick); time it."""
    import shutil

    from activedet import params as P

    base = ctx.out.parent / "e2e"
    shutil.rmtree(base, ignore_errors=True)  # from scratch: the dataset, every model, every selection
    configfile = ROOT / ("tests/data/params_tiny.yaml" if ctx.quick else "params.yaml")
    experiment = "e2e"
    cmd = [sys.executable, "-m", "snakemake", "--cores", "all", "--quiet", "rules", "--configfile", str(configfile),
           "--config", f"output_dir={base}", f"data_dir={base / 'data'}", f"experiment={experiment}"]
    start = time.time()
    t0 = time.perf_counter()
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    jobs = re.search(r"^total\s+(\d+)", result.stdout + result.stderr, re.M)
    p = P.load(str(configfile))
    exp = base / experiment
    info = {"start": start, "seconds": seconds, "window": (start - 1, time.time() + 1),
            "command": "snakemake --cores all" + ("" if configfile.name == "params.yaml" else f" --configfile {configfile.name}"),
            "jobs": int(jobs.group(1)) if jobs else None}
    print(f"ran {info['command']} into {exp} in {seconds:.1f}s ({p['active']['strategies']}, seeds {p['active']['seeds']})")
    return exp, info


def run(ctx: Context, run_e2e: bool = False, log_dir: Path | None = None) -> None:
    if run_e2e:
        exp, info = run_workflow(ctx)
        report(ctx, exp, info, f"measured here: {exp}")
        return
    if ctx.experiment is None:
        ctx.unavailable(SECTION, "wall time split", "no finished experiment (python -m bench end_to_end --run-e2e "
                                                    "runs the default workflow and times it)")
        return
    info = last_run_log(ctx.experiment, log_dir or ROOT / ".snakemake" / "log")
    source = f"{ctx.experiment}, last run {Path(info['path']).name}" if info else str(ctx.experiment)
    report(ctx, ctx.experiment, info, source)
