"""Item 7: how scoring and selection time and memory grow with the pool size (2k to 32k images).

Pools beyond the 2000 generated scenes are derived from them (flipped and channel-permuted copies,
``bench.data.DerivedPool``): scoring cost depends on the number of images, not on their novelty.
Per strategy and size: scoring seconds and selection seconds (budget ``active.budget``, 5% of the
pool labeled), the memory peak of each (the process's resident set while the step ran, ``common.peak_memory``), and Core-set's k-center greedy alone on the pool's features; per curve the fitted
exponent k of ``seconds ~ images**k`` (1 = linear; goal <= 1.1). Pools above 8k images are timed once.
"""
from __future__ import annotations

import traceback

import numpy as np

from .common import Context, loglog_slope, peak_memory
from .data import pool_of
from .scoring import scorer

SECTION = "7 scaling"


def sizes(ctx: Context) -> list[int]:
    return [16, 48, 112] if ctx.quick else [2000, 4000, 8000, 16000, 32000]


def run(ctx: Context) -> None:
    import torch

    from activedet.strategies import STRATEGIES
    from activedet.strategies.coreset import CoresetStrategy, k_center_greedy

    budget = 4 if ctx.quick else ctx.params["active"]["budget"]
    curves: dict[str, dict[str, list[float]]] = {}
    for name in STRATEGIES:
        try:
            strategy, model, origin = scorer(ctx, name)
        except Exception as e:
            ctx.unavailable(SECTION, f"{name}: scoring and selection vs pool size", f"{type(e).__name__}: {e}")
            continue
        curve: dict[str, list[float]] = {"score": [], "select": []}
        for n in sizes(ctx):
            repeats = min(ctx.repeats, 3) if n <= 8000 else 1  # a call takes minutes there
            pool = pool_of(ctx, n)
            ids = [r[0]["id"] for r in pool.records]
            labeled = set(ids[: max(1, n // 20)])
            holder = {}

            def score():
                holder["scores"], holder["score_mib"] = peak_memory(
                    lambda: strategy.score(model, pool, labeled, ctx.device, 64), ctx.device)

            def select():
                holder["select_mib"] = peak_memory(
                    lambda: strategy.select(holder["scores"], budget, np.random.default_rng(0)), ctx.device)[1]

            try:
                # no warm-up round: a call takes seconds and the model is loaded before the first one
                t_score = ctx.paired({"score": score}, repeats=repeats, warmup=0)["score"]
            except Exception as e:
                ctx.unavailable(SECTION, f"{name}: scoring, {n} images", f"{type(e).__name__}: {e}")
                traceback.print_exc()
                break
            ctx.add(SECTION, f"{name}: scoring, {n} images", t_score, "s")
            ctx.add(SECTION, f"{name}: scoring memory peak, {n} images", holder["score_mib"], "MiB",
                    note="the process's peak resident memory while the step ran (its last repeat)")
            curve["score"].append(float(np.median(t_score)))
            scores = holder["scores"]
            try:
                t_select = ctx.paired({"select": select}, repeats=repeats)["select"]
            except Exception as e:  # e.g. a strategy that selects from another step's output (MGRAL's agent)
                ctx.unavailable(SECTION, f"{name}: selection of {budget}, {n} images", f"{type(e).__name__}: {e}")
            else:
                ctx.add(SECTION, f"{name}: selection of {budget}, {n} images", [1e3 * s for s in t_select], "ms")
                ctx.add(SECTION, f"{name}: selection memory peak, {n} images", holder["select_mib"], "MiB",
                        note="the process's peak resident memory while the step ran (its last repeat)")
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
                        goal="<= 1.1", note=f"seconds ~ images^k fitted over {sizes(ctx)} images; 1 = linear")
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
