"""Report steps: report (curves, summary, figure), combine-curves (seeds run apart), resolve-params, paper-tables."""
from __future__ import annotations

from pathlib import Path

from ..io import InputError, write_json
from .common import load_coco, load_params, params_arg


def cmd_report(args) -> int:
    import pandas as pd

    from ..report import write_report

    p = load_params(args)
    pool = load_coco(args.pool, p)
    a = p["active"]
    out = write_report(args.experiment_dir, a["strategies"], a["seeds"], a["cycles"], len(pool.images),
                       args.out_dir, cost=p["cost"], stopping=p["stopping"] if args.stopping else None,
                       categories=pool.categories)
    summary = out["summary"]
    if args.metrics:  # one number per strategy, so that `dvc metrics show` stays narrow; the rest: summary.csv
        write_json(args.metrics, {row["strategy"]: {"alc": row["alc_mean"]} for row in summary.to_dict("records")})
    with pd.option_context("display.width", 200, "display.max_columns", 12):
        print(summary[["strategy", "n_seeds", "alc_mean", "alc_std", "alc_diff_vs_random",
                       "alc_diff_ci95_low", "alc_diff_ci95_high", "alc_boxes", "alc_seconds"]].to_string(index=False))
    return 0


def cmd_combine_curves(args) -> int:
    from ..report import write_combined

    p = load_params(args)
    out = write_combined(args.curves, args.out_dir, cost=p["cost"])
    for line in out["checked"]:
        print(f"checked: {line}")
    summary = out["summary"]
    print(summary[["strategy", "n_seeds", "alc_mean", "alc_std", "alc_diff_vs_random", "alc_diff_ci95_low",
                   "alc_diff_ci95_high"]].to_string(index=False))
    return 0


def cmd_resolve_params(args) -> int:
    import yaml

    from ..io import atomic_path
    from ..params import plain

    p = plain(load_params(args))
    with atomic_path(args.out) as tmp:
        Path(tmp).write_text("# The experiment's parameters after validation, schema defaults filled in.\n"
                             + yaml.safe_dump(p, sort_keys=False), encoding="utf-8")
    print(f"{args.out}: resolved parameters")
    return 0


def cmd_paper_tables(args) -> int:
    from ..paper.tables import TABLES, write_tables

    unknown = [t for t in args.tables if t not in TABLES]
    if unknown:
        raise InputError(f"unknown table(s) {', '.join(unknown)} (known: {', '.join(TABLES)})")
    for path in write_tables(args.curves, args.out_dir, args.tables):
        print(path)
    return 0


def register(add) -> None:
    sp = add("report", cmd_report, "learning curves, summary table, time table and figure of an experiment")
    params_arg(sp)
    sp.add_argument("--experiment-dir", required=True, help="results/<experiment>")
    sp.add_argument("--pool", required=True, help="COCO JSON of the pool (for labeled fractions)")
    sp.add_argument("--out-dir", default=None, help="where curves.csv etc. go (default: the experiment dir)")
    sp.add_argument("--metrics", default=None, help="also write each strategy's ALC here (a narrow metrics JSON for "
                                                    "dvc metrics show; the full table is summary.csv)")
    sp.add_argument("--stopping", action="store_true",
                    help="also the stopping table and figure (needs every cycle's stop_predictions.json)")

    sp = add("combine-curves", cmd_combine_curves,
             "one experiment's report from the curves.csv of runs of disjoint seeds (a repeated seed must agree)")
    params_arg(sp)
    sp.add_argument("--curves", nargs="+", required=True, help="curves.csv files, e.g. one per seed's run")
    sp.add_argument("--out-dir", required=True, help="where curves.csv, summary.csv, time_per_step.csv and figures/ go")

    sp = add("resolve-params", cmd_resolve_params, "the params after validation with every default filled in (YAML)")
    params_arg(sp)
    sp.add_argument("--out", required=True)

    sp = add("paper-tables", cmd_paper_tables, "our versions of the papers' tables beside the published numbers")
    sp.add_argument("--curves", required=True, help="curves.csv of an experiment that ran the tables' variants")
    sp.add_argument("--out-dir", required=True)
    sp.add_argument("--tables", nargs="+", required=True, help="e.g. miaod_table1 miaod_table3 miaod_table4")
