"""Where an MI-AOD training step's time goes: its convolutions against everything else, beside a plain step.

    python -m bench.miaod_profile --out docs/results/bench/miaod_step_profile.csv

The plain, label, min and max steps of ``bench.miaod.step_functions`` (the detector of ``--params`` from
random initialisation, one labeled and one unlabeled batch of ``train.batch_size`` digit scenes) run
``--steps`` times each under ``torch.profiler``. One row per step: self CPU ms per step of the convolutions
(every op whose name holds ``convolution``: the forward kernels and ``convolution_backward``), of the other
ops, and of all ops, the number of convolution op calls per step (``conv_calls``: a count, unlike the times
independent of the machine's load), then each ratio to the plain step. A last row, ``weighted``, is the mean over the
schedule's phases as the bench's ``2 miaod`` section weighs them. ``conv_ratio`` is the floor of the step
ratio while the step computes the same convolutions: MI-AOD's four towers (f1, f2, f_r, f_mil, as in the
released code) against the plain detector's two. One thread, as the bench.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from .common import run_tool

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.miaod_profile", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default=str(ROOT / "params.yaml"))
    ap.add_argument("--steps", type=int, default=5, help="profiled repeats of each step (after one warm-up)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="tiny scenes and batch 2: checks the tool runs")
    ap.add_argument("--out", type=Path, required=True, help="CSV to write")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    return run_tool(run, parse_args(argv))


def is_convolution(op: str) -> bool:
    return "convolution" in op


def convolution_profile(step, repeats: int) -> dict:
    """Self CPU ms per call of ``step``'s convolution ops and of its other ops, and its convolution op calls per
    call (``conv_ms``, ``other_ms``, ``conv_calls``), under ``torch.profiler`` after one warm-up call (first-call
    allocations and kernel selection stay out of the figures)."""
    from torch.profiler import ProfilerActivity, profile

    step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(repeats):
            step()
    conv = other = calls = 0.0
    for e in prof.key_averages():
        ms = e.self_cpu_time_total / 1e3 / repeats
        if is_convolution(e.key):
            conv += ms
            calls += e.count / repeats
        else:
            other += ms
    return {"conv_ms": conv, "other_ms": other, "conv_calls": calls}


def profile_steps(steps: dict, weights: dict, repeats: int) -> pd.DataFrame:
    """Rows ``step, weight, conv_ms, other_ms, total_ms`` (self CPU ms per call), ``conv_calls`` (convolution
    op calls per call) and the times' ratios to
    ``steps['plain']``; the ``weighted`` row sums the phases' rows times ``weights`` (label / min / max)."""
    rows = []
    for name, step in steps.items():
        prof = convolution_profile(step, repeats)
        rows.append({"step": name, "weight": weights.get(name, float("nan")), "conv_ms": prof["conv_ms"],
                     "other_ms": prof["other_ms"], "total_ms": prof["conv_ms"] + prof["other_ms"],
                     "conv_calls": prof["conv_calls"]})
    table = pd.DataFrame(rows).set_index("step")
    phases = [ph for ph in weights if ph in table.index]
    mixed = {c: sum(weights[ph] * table.loc[ph, c] for ph in phases)
             for c in ("conv_ms", "other_ms", "total_ms", "conv_calls")}
    table.loc["weighted"] = {"weight": sum(weights[ph] for ph in phases), **mixed}
    for c in ("conv", "other", "total"):
        table[f"{c}_ratio"] = table[f"{c}_ms"] / table.loc["plain", f"{c}_ms"]
    return table.reset_index()


def run(args) -> int:
    import torch

    from activedet.io import atomic_path

    from .__main__ import make_context
    from .data import bench_params
    from .miaod import run_batches, step_functions

    # the bench's own context: params with the random-init backbone, threads, and a scratch folder beside --out
    ctx = make_context(argparse.Namespace(params=args.params, threads=args.threads, quick=args.quick, device="cpu",
                                          experiment="none", out=str(args.out), repeats=1))
    try:
        p = bench_params(ctx)
        batch = 2 if args.quick else p["train"]["batch_size"]
        steps, weights = step_functions(p, *run_batches(ctx, batch), ctx.device)
        table = profile_steps(steps, weights, args.steps)
    finally:
        ctx.close()
    with atomic_path(args.out) as tmp:
        table.to_csv(tmp, index=False, float_format="%.4g")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
