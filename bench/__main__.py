"""Benchmark suite: speed and cost of every step, each measured beside its reference in the same run.

    python -m bench                  all sections (what `make bench` runs)
    python -m bench scoring scaling  some sections
    python -m bench --quick          tiny sizes, one repeat (a smoke run, seconds; writes bench_quick.csv)

Sections (the issue's items): detector (1), miaod (2), scoring (3), evaluation (4), mgral (5),
end_to_end (6), scaling (7); `reference` (100% vs random 10% labeled, minutes) runs only when named.
Prints a table and merges the rows into results/bench/bench.csv (a row with the same section, name
and device is replaced). Columns: docs/performance.md.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

from .common import DEFAULT_OUT, QUICK_OUT, ROOT, Context, machine_description, print_table, write_csv

SECTIONS = ("detector", "miaod", "scoring", "evaluation", "mgral", "end_to_end", "scaling")
ALIASES = {"throughput": "detector"}  # the earlier command name


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sections", nargs="*", metavar="SECTION",
                    help=f"{', '.join(SECTIONS)}, reference, all (default: all = every section but reference)")
    ap.add_argument("--quick", action="store_true", help="tiny sizes and one repeat: checks the suite runs")
    ap.add_argument("--repeats", type=int, default=None, help="repeats per figure (default 5, --quick 1)")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads (default: torch's, one per core; --quick: 1)")
    ap.add_argument("--device", default="auto", help="auto (CUDA when available) | cpu | cuda | cuda:N")
    ap.add_argument("--params", default=str(ROOT / "params.yaml"), help="experiment parameters (default params.yaml)")
    ap.add_argument("--experiment", default=None,
                    help="finished experiment folder read by miaod, scoring and end_to_end "
                         "(default <output_dir>/<experiment> of the params when it exists; 'none' to ignore)")
    ap.add_argument("--out", default=None, help=f"CSV to write (default {DEFAULT_OUT.relative_to(ROOT)}; "
                                                f"--quick: {QUICK_OUT.relative_to(ROOT)})")
    ap.add_argument("--run-e2e", action="store_true",
                    help="end_to_end: run the default workflow afresh into <out folder>/e2e and time it "
                         "(with --quick: tests/data/params_tiny.yaml)")
    ap.add_argument("--snakemake-logs", default=str(ROOT / ".snakemake" / "log"),
                    help="end_to_end: where the Snakemake logs of the experiment's runs are")
    ap.add_argument("--epochs", type=float, default=60, help="reference: epochs over the labeled images")
    ap.add_argument("--fraction", type=float, default=0.1, help="reference: the small random labeled fraction")
    args = ap.parse_args(argv)
    chosen = [ALIASES.get(s, s) for s in args.sections] or ["all"]
    unknown = [s for s in chosen if s not in SECTIONS + ("reference", "all")]
    if unknown:
        ap.error(f"unknown section {', '.join(unknown)} (known: {', '.join(SECTIONS)}, reference, all)")
    args.sections = [s for s in SECTIONS if "all" in chosen or s in chosen] + (["reference"] * ("reference" in chosen))
    return args


def make_context(args) -> Context:
    import torch

    from activedet import params as P
    from activedet.engine.train import resolve_device

    params = P.load(args.params)
    # Speed and memory do not depend on the weights' values: the bench builds its detectors from random
    # initialisation instead of the experiment's pretrained backbone file (which may not exist yet).
    if params["detector"]["backbone_weights"] == "glyph_scenes":
        params["detector"]["backbone_weights"] = None
    threads = args.threads or (1 if args.quick else 0)
    if threads:
        torch.set_num_threads(threads)
    device = resolve_device(args.device)
    if args.experiment is None:
        exp = ROOT / params["output_dir"] / params["experiment"]
        experiment = exp if (exp / "runs").is_dir() else None
    elif args.experiment.lower() == "none":
        experiment = None
    else:
        experiment = Path(args.experiment).resolve()
    out = Path(args.out).resolve() if args.out else (QUICK_OUT if args.quick else DEFAULT_OUT)
    repeats = args.repeats or (1 if args.quick else 5)
    ctx = Context(device=device, quick=args.quick, out=out, params=params, experiment=experiment, repeats=repeats)
    ctx.machine = machine_description(device)
    torch.manual_seed(0)
    return ctx


def run_section(ctx: Context, name: str, args) -> None:
    from . import detector, end_to_end, evaluation, mgral, miaod, reference, scaling, scoring

    if name == "end_to_end":
        end_to_end.run(ctx, run_e2e=args.run_e2e, log_dir=Path(args.snakemake_logs))
    elif name == "reference":
        reference.run(ctx, args.epochs, args.fraction)
    else:
        {"detector": detector, "miaod": miaod, "scoring": scoring, "evaluation": evaluation, "mgral": mgral,
         "scaling": scaling}[name].run(ctx)


def main(argv=None) -> int:
    args = parse_args(argv)
    ctx = make_context(args)
    print(json.dumps({"device": ctx.device_name, "machine": ctx.machine, "quick": ctx.quick, "repeats": ctx.repeats,
                      "experiment": str(ctx.experiment) if ctx.experiment else None, "sections": args.sections}))
    failed = []
    try:
        for name in args.sections:
            t = time.perf_counter()
            print(f"== {name}", flush=True)
            try:
                run_section(ctx, name, args)
            except Exception as e:  # one broken section must not lose the others' figures
                traceback.print_exc()
                failed.append(name)
                ctx.unavailable(name, "section failed", f"{type(e).__name__}: {e}")
            print(f"== {name}: {time.perf_counter() - t:.1f}s", flush=True)
    finally:
        ctx.close()
    if ctx.rows:
        write_csv(ctx.rows, ctx.out)
        print()
        print_table(ctx.rows)
        print(f"\nwrote {ctx.out}")
    if failed:
        print(f"error: section(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
