"""Item 5: MGRAL's reward estimate from the lookup table vs one proxy training; the POT solver choices.

Calls what ``activedet.mgral.measure`` exposes: ``reward_speedup`` (median seconds of one table
estimate against the seconds of one proxy training) and ``compare_solvers`` (exact ``ot.emd2`` /
sliced / Sinkhorn ``ot.sinkhorn2``: time per estimate and agreement with the exact distances). The
inputs are real: the pool's MGRAL embeddings from the cycle detector, a proxy trained with
``strategies.mgral`` options on the labeled images plus a random candidate batch of ``active.budget``.
The table's records are random batches of the same size; their mAPs are drawn at random, because the
cost of an estimate does not depend on them (and a real table would cost ``records`` proxy trainings).
"""
from __future__ import annotations

import numpy as np

from .common import Context
from .data import bench_params, dataset, scenes, trained_model

SECTION = "5 mgral"


def run(ctx: Context) -> None:
    try:
        from activedet.mgral import measure
        from activedet.mgral.lookup import LookupTable
        from activedet.mgral.proxy import ProxyRunner, candidate_batch
        from activedet.strategies import STRATEGIES
    except ImportError as e:
        ctx.unavailable(SECTION, "reward estimate vs proxy training", f"activedet.mgral is not importable ({e})")
        return
    missing = [f for f in ("reward_speedup", "compare_solvers") if not hasattr(measure, f)]
    if missing or "mgral" not in STRATEGIES:
        ctx.unavailable(SECTION, "reward estimate vs proxy training",
                        f"activedet.mgral.measure lacks {', '.join(missing)}" if missing else "mgral is not registered")
        return

    p = bench_params(ctx)
    options = dict(p["strategies"]["mgral"])
    n_pool, n_labeled, budget = (48, 16, 4) if ctx.quick else (2000, p["active"]["initial_labeled"], p["active"]["budget"])
    if ctx.quick:
        options.update(proxy_iterations=2, records=3)
    data = scenes(ctx, n_pool)
    pool, images = data["pool"], data["pool_images"]
    labeled = pool.subset(pool.image_ids[:n_labeled])
    model, origin = trained_model(ctx, "mgral", STRATEGIES["mgral"].trainer)
    pool_ds = dataset(ctx, pool, images)
    emb = STRATEGIES["mgral"](options).score(model, pool_ds, set(labeled.image_ids), ctx.device, 64)
    unl = emb[~emb["labeled"]]
    x = np.stack(unl["embedding"].to_numpy()).astype(np.float64)
    unl_ids = [int(i) for i in unl["image_id"]]

    runner = ProxyRunner(p, options, None, labeled, pool, images, 0, model=model,
                         ckpt={"categories": pool_ds.categories})
    runner.teacher_map  # noqa: B018 - evaluated once, outside the timed runs, as in the pipeline
    proxy_s = [runner.run(candidate_batch(unl_ids, budget, 0, 0, r), r)["seconds"]
               for r in range(min(ctx.repeats, 3))]
    what = f"{options['proxy_iterations']} iterations on {len(runner.train_ds)} labeled + {budget} candidates"
    ctx.add(SECTION, "one proxy training (a real reward)", proxy_s, "s", note=f"{what}; model: {origin}")

    rng = np.random.default_rng(0)
    records = [x[rng.choice(len(x), budget, replace=False)] for _ in range(options["records"])]
    table = LookupTable(records, rng.uniform(0.3, 0.5, len(records)).tolist(), options["solver"],
                        options["nearest_records"], options["sliced_projections"], options["sinkhorn_reg"], 0)
    speed = [measure.reward_speedup(table, x, budget, float(np.median(proxy_s)), queries=10 if ctx.quick else 200,
                                    seed=r) for r in range(min(ctx.repeats, 3))]
    estimate_ms = [1e3 * s["estimate_seconds"] for s in speed]
    table_what = f"solver {options['solver']}, {len(records)} records of {budget} images, {x.shape[1]}-d embeddings"
    ctx.add(SECTION, "reward estimate from the lookup table", estimate_ms, "ms", reference="one proxy training",
            reference_values=1e3 * float(np.median(proxy_s)), note=table_what)
    ctx.add(SECTION, "reward speed-up: proxy training / table estimate",
            [s / (e / 1e3) for s, e in zip(proxy_s, estimate_ms)], "x", goal=">= 1e4", note=f"paper: 1600x (4800 vs 3 min for 10 agent iterations); {table_what}")

    runs = [measure.compare_solvers(x, budget, records=3 if ctx.quick else options["records"],
                                    queries=4 if ctx.quick else 20, seed=0,
                                    n_projections=options["sliced_projections"], sinkhorn_reg=options["sinkhorn_reg"],
                                    nearest=options["nearest_records"]).set_index("solver")
            for _ in range(min(ctx.repeats, 2))]  # each already times an estimate 7 times (Sinkhorn: seconds)
    first = runs[0]
    exact = [1e3 * r.loc["exact", "seconds_per_estimate"] for r in runs]
    for solver in first.index:
        row = first.loc[solver]
        ms = [1e3 * r.loc[solver, "seconds_per_estimate"] for r in runs]
        ctx.add(SECTION, f"POT solver {solver}: time per reward estimate", ms, "ms", reference="exact (ot.emd2)",
                reference_values=exact, ratio_values=[a / b for a, b in zip(ms, exact)],
                note=f"{int(row['records'])} records of {int(row['budget'])} images, {int(row['dim'])}-d")
        ctx.add(SECTION, f"POT solver {solver}: agreement with exact (Spearman of distances)",
                float(row["spearman_vs_exact"]), "",
                note=f"same nearest record {row['same_nearest_record']:.2f}, same fallback decision "
                     f"{row['same_fallback_decision']:.2f}, mean |estimate - exact's| {row['mean_abs_estimate_diff']:.2g}")
