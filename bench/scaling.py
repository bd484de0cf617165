"""Item 7: how scoring and selection time grow with the pool size (1k, 2k, 4k, 8k images).

Pools beyond the 2000 generated scenes are derived from them (flipped and channel-permuted copies,
``bench.data.DerivedPool``): scoring cost depends on the number of images, not on their novelty.
Per strategy and size: scoring seconds and selection seconds (budget ``active.budget``, 5% of the
pool labeled), and Core-set's k-center greedy alone on the pool's features; per curve the fitted
exponent k of ``seconds ~ images**k`` (1 = linear).
"""
from __future__ import annotations

import traceback

import numpy as np

from .common import Context, loglog_slope
from .data import pool_of
from .scoring import scorer

SECTION = "7 scaling"


def sizes(ctx: Context) -> list[int]:
    return [16, 48, 112] if ctx.quick else [1000, 2000, 4000, 8000]


def run(ctx: Context) -> None:
    import torch

    from activedet.strategies import STRATEGIES
    from activedet.strategies.coreset import CoresetStrategy, k_center_greedy

    budget = 4 if ctx.quick else ctx.params["active"]["budget"]
    repeats = min(ctx.repeats, 3)
    curves: dict[str, dict[str, list[float]]] = {}
    for name in STRATEGIES:
        try:
            strategy, model, origin = scorer(ctx, name)
        except Exception as e:
            ctx.unavailable(SECTION, f"{name}: scoring and selection vs pool size", f"{type(e).__name__}: {e}")
            continue
        curve: dict[str, list[float]] = {"score": [], "select": []}
        for n in sizes(ctx):
            pool = pool_of(ctx, n)
            ids = [r[0]["id"] for r in pool.records]
            labeled = set(ids[: max(1, n // 20)])
            holder = {}

            def score():
                holder["scores"] = strategy.score(model, pool, labeled, ctx.device, 64)

            try:
                # no warm-up round: a call takes seconds and the model is loaded before the first one
                t_score = ctx.paired({"score": score}, repeats=repeats, warmup=0)["score"]
            except Exception as e:
                ctx.unavailable(SECTION, f"{name}: scoring, {n} images", f"{type(e).__name__}: {e}")
                traceback.print_exc()
                break
            ctx.add(SECTION, f"{name}: scoring, {n} images", t_score, "s")
            curve["score"].append(float(np.median(t_score)))
            scores = holder["scores"]
            try:
                t_select = ctx.paired({"select": lambda: strategy.select(scores, budget, np.random.default_rng(0))},
                                      repeats=repeats)["select"]
            except Exception as e:  # e.g. a strategy that selects from another step's output (MGRAL's agent)
                ctx.unavailable(SECTION, f"{name}: selection of {budget}, {n} images", f"{type(e).__name__}: {e}")
            else:
                ctx.add(SECTION, f"{name}: selection of {budget}, {n} images", [1e3 * s for s in t_select], "ms")
                curve["select"].append(float(np.median(t_select)))
            if isinstance(strategy, CoresetStrategy):
                feats = torch.from_numpy(np.stack(scores["feature"].to_numpy())).float()
                centers = torch.from_numpy(scores["labeled"].to_numpy(dtype=bool, copy=True))
                t_kc = ctx.paired({"kc": lambda: k_center_greedy(feats, centers, budget)}, repeats=repeats)["kc"]
                ctx.add(SECTION, f"{name}: k-center greedy, {budget} centres from {n} images "
                                 f"({feats.shape[1]}-d features)", [1e3 * s for s in t_kc], "ms")
                curve.setdefault("k-center", []).append(float(np.median(t_kc)))
        curves[name] = curve
        for what, seconds in curve.items():  # only complete curves get an exponent
            if len(seconds) == len(sizes(ctx)) and min(seconds) > 0:
                ctx.add(SECTION, f"{name}: {what} time growth exponent", loglog_slope(sizes(ctx), seconds), "",
                        note=f"seconds ~ images^k fitted over {sizes(ctx)} images; 1 = linear")
    if curves:
        plot(ctx, curves)


def plot(ctx: Context, curves: dict[str, dict[str, list[float]]]) -> None:
    """results/bench/scaling_<device>.png: log-log seconds vs pool size per strategy and step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from activedet.io import atomic_path

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8), dpi=110)
    for name, curve in curves.items():
        for ax, what in zip(axes, ("score", "select")):
            if len(curve[what]) == len(sizes(ctx)):
                ax.plot(sizes(ctx), curve[what], marker="o", ms=3, label=name)
        if "k-center" in curve:
            axes[1].plot(sizes(ctx), curve["k-center"], marker="x", ls="--", ms=4, label=f"{name} k-center")
    for ax, title in zip(axes, ("scoring", "selection")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("pool images")
        ax.set_ylabel("seconds (median)")
        ax.set_title(f"{title} time vs pool size ({ctx.device_name})")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.tight_layout()
    path = ctx.out.parent / f"scaling{'_quick' if ctx.quick else ''}_{ctx.device.type}.png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    print(f"wrote {path}")
