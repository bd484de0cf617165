"""Item 3: uncertainty scoring throughput of every registered strategy vs a plain inference forward.

Every strategy of ``activedet.strategies.STRATEGIES`` scores the same pool with the model its trainer
makes (``build_model(params, C, strategy.trainer)``; a finished experiment's checkpoint when there is
one). The reference is the bare forward of the same model over the same images (``cls`` and ``reg``
branches, no postprocessing), timed interleaved with the scoring. Strategies that score with a model
are forward-bound: the goal is scoring at >= 0.9 of the forward's images/s.
"""
from __future__ import annotations

import traceback

from .common import Context
from .data import pool_of, trained_model

SECTION = "3 scoring"


def forward_only(model, pool, device, batch_size: int) -> None:
    from activedet.engine.predict import run_model

    run_model(model, pool, device, batch_size, lambda *a: None, branches=("cls", "reg"), detect=False)


def scorer(ctx: Context, name: str, log=print):
    """(strategy, model or None, where the model came from) for a registered strategy; raises if unusable."""
    from activedet.strategies import build_strategy

    strategy = build_strategy(name, ctx.params)
    if not strategy.needs_model:
        return strategy, None, "no model"
    model, origin = trained_model(ctx, name, strategy.trainer)
    return strategy, model, origin


def run(ctx: Context) -> None:
    from activedet.strategies import STRATEGIES

    n = 32 if ctx.quick else 2000
    batch_size = 64
    pool = pool_of(ctx, n)
    ids = [r[0]["id"] for r in pool.records]
    labeled = set(ids[: max(1, n // 20)])
    for name in STRATEGIES:
        try:
            strategy, model, origin = scorer(ctx, name)
        except Exception as e:  # a strategy another part of the project is still building
            ctx.unavailable(SECTION, f"{name}: scoring throughput", f"{type(e).__name__}: {e}")
            traceback.print_exc()
            continue
        forward_model = model
        if forward_model is None:  # random scores without a model; compare with the plain detector's forward
            forward_model, origin = trained_model(ctx, "random", "detector")
        fns = {"score": lambda: strategy.score(model, pool, labeled, ctx.device, batch_size),
               "forward": lambda: forward_only(forward_model, pool, ctx.device, batch_size)}
        try:
            t = ctx.paired(fns)
        except Exception as e:
            ctx.unavailable(SECTION, f"{name}: scoring throughput", f"{type(e).__name__}: {e}")
            traceback.print_exc()
            continue
        ctx.add(SECTION, f"{name}: scoring throughput ({n} images, batch {batch_size})", [n / s for s in t["score"]],
                "images/s", reference="plain inference forward", reference_values=[n / s for s in t["forward"]],
                ratio_values=[f / s for s, f in zip(t["score"], t["forward"])],
                goal=">= 0.9" if strategy.needs_model else "",
                note=f"model: {origin}" if strategy.needs_model else "needs no model (ratio: vs the detector's forward)")
