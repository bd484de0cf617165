"""MGRAL measurements: the solver comparison, the table-vs-proxy speed-up, the paper's time table, and
the compute an experiment's MGRAL runs spent beside their mAP. ``bench`` and the CLI call these.

Timings are wall seconds of this process; run them with one BLAS thread (``OMP_NUM_THREADS=1``)
on a quiet machine, as every job of the pipeline runs.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from ..io import atomic_path, read_json
from .lookup import SOLVERS, LookupTable
from .steps import zero_advantage_iterations

PAPER_DIR = Path(__file__).resolve().parents[1] / "paper" / "numbers"


def _median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def query_batches(x: np.ndarray, budget: int, n: int, seed: int) -> list[np.ndarray]:
    """Index sets of ``n`` batches: half uniformly random (what Gumbel-top-k samples of an untrained agent
    look like), half concentrated (the ``budget`` nearest images to a random one: what a trained agent's
    top-b can look like, and what the fallback exists for)."""
    rng = np.random.default_rng(seed)
    out = []
    for q in range(n):
        if q % 2 == 0:
            out.append(rng.choice(len(x), budget, replace=False))
        else:
            anchor = x[rng.integers(len(x))]
            out.append(np.argsort(((x - anchor) ** 2).sum(1), kind="stable")[:budget])
    return out


def compare_solvers(x: np.ndarray, budget: int, records: int = 8, queries: int = 20, seed: int = 0,
                    n_projections: int = 128, sinkhorn_reg: float = 0.05, nearest: int = 3) -> pd.DataFrame:
    """Each solver on one table of random records and the same queries: time per reward estimate, and its
    agreement with the exact distance (Spearman rank correlation of all query-record distances, same
    nearest record, same fallback decision, |reward estimate - exact's|). The records' mAPs are synthetic
    (uniform in [0.3, 0.5]): agreement concerns distances, not detectors."""
    from scipy.stats import spearmanr

    rng = np.random.default_rng(seed)
    rec_idx = [rng.choice(len(x), budget, replace=False) for _ in range(records)]
    maps = rng.uniform(0.3, 0.5, records).tolist()
    qs = query_batches(x, budget, queries, seed + 1)
    results = {}
    for solver in SOLVERS:
        t0 = time.perf_counter()
        table = LookupTable([x[i] for i in rec_idx], maps, solver, nearest, n_projections, sinkhorn_reg, seed)
        build_s = time.perf_counter() - t0
        d = np.stack([table.distances(x[q]) for q in qs])
        est = np.array([table.estimate(x[q])[0] for q in qs])
        beyond = np.array([table.beyond_threshold(row.min()) for row in d])
        per_query = _median_seconds(lambda: table.estimate(x[qs[0]]), 7)
        results[solver] = {"d": d, "est": est, "beyond": beyond, "query_s": per_query, "build_s": build_s,
                           "threshold": table.threshold}
    ref = results["exact"]
    rows = []
    for solver, r in results.items():
        rows.append({"solver": solver, "records": records, "budget": budget, "dim": x.shape[1],
                     "seconds_per_estimate": r["query_s"], "seconds_per_distance": r["query_s"] / records,
                     "table_build_seconds": r["build_s"],
                     "spearman_vs_exact": float(spearmanr(r["d"].ravel(), ref["d"].ravel()).statistic),
                     "same_nearest_record": float((r["d"].argmin(1) == ref["d"].argmin(1)).mean()),
                     "same_fallback_decision": float((r["beyond"] == ref["beyond"]).mean()),
                     "fallback_rate": float(r["beyond"].mean()),
                     "mean_abs_estimate_diff": float(np.abs(r["est"] - ref["est"]).mean())})
    return pd.DataFrame(rows)


def reward_speedup(table: LookupTable, x: np.ndarray, budget: int, proxy_seconds: float, queries: int = 200,
                   seed: int = 0) -> dict:
    """Median seconds of one table estimate (random batches) against one proxy training."""
    rng = np.random.default_rng(seed)
    batches = [x[rng.choice(len(x), budget, replace=False)] for _ in range(queries)]
    times = []
    for b in batches:
        t0 = time.perf_counter()
        table.estimate(b)
        times.append(time.perf_counter() - t0)
    est_s = float(np.median(times))
    return {"solver": table.solver, "records": len(table.maps), "estimate_seconds": est_s,
            "proxy_seconds": proxy_seconds, "speedup": proxy_seconds / est_s}


# ------------------------------------------------------------------ the paper's time table
def time_table(params: dict, options: dict, model_path, images_dir, labeled, pool, budget: int, seed: int,
               iterations: int = 10, log=print) -> pd.DataFrame:
    """The paper's time table measured on one cycle: ``iterations`` agent iterations rewarded by the lookup
    table and by a real proxy training each (no table), and one whole MGRAL cycle with the table
    (embeddings, ``records`` proxy runs, ``agent_iterations`` agent iterations with their fallbacks, the
    selection; the detector training every strategy shares is not counted). Paper numbers beside."""
    from ..checkpoint import load_model
    from ..data.dataset import DetectionDataset
    from ..device import resolve_device
    from ..strategies.mgral import MGRALStrategy
    from .agent import train_agent
    from .proxy import ProxyRunner
    from .steps import (
        gather_table,
        lookup_record,
        proxy_seed,
        train_agent_step,
        unlabeled_embeddings,
    )

    device = resolve_device(params["device"])
    model, ckpt = load_model(model_path, device)
    ds = params["dataset"]
    t0 = time.perf_counter()
    pool_ds = DetectionDataset(pool, images_dir, ds["input_size"], ds["keep_ratio"], True, ckpt["categories"])
    emb = MGRALStrategy(options).score(model, pool_ds, set(labeled.image_ids), device, 64)
    embed_s = time.perf_counter() - t0
    runner = ProxyRunner(params, options, None, labeled, pool, images_dir, seed, model=model, ckpt=ckpt)
    runner.teacher_map  # noqa: B018 - evaluated once, outside every timed run
    t0 = time.perf_counter()
    records = [lookup_record(runner, labeled, pool, seed, 0, r, budget) for r in range(options["records"])]
    table_df = gather_table(records)
    records_s = time.perf_counter() - t0
    log(f"embeddings {embed_s:.1f}s, {len(records)} records {records_s:.1f}s")

    t0 = time.perf_counter()
    _, _, short = train_agent_step({**options, "agent_iterations": iterations}, emb, table_df, labeled, budget,
                                   seed, 0, lambda: runner)
    with_table_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    _, scores, full = train_agent_step(options, emb, table_df, labeled, budget, seed, 0, lambda: runner)
    agent_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    MGRALStrategy(options).select(scores, budget, np.random.default_rng(seed))
    select_s = time.perf_counter() - t0
    log(f"{iterations} iterations with the table {with_table_s:.1f}s ({short['fallbacks']} fallbacks); "
        f"{options['agent_iterations']} iterations {agent_s:.1f}s ({full['fallbacks']} fallbacks)")

    ids, x = unlabeled_embeddings(emb, labeled, "embeddings")
    calls = {"n": 0}

    def proxy_reward(indices: np.ndarray) -> float:
        calls["n"] += 1
        return runner.run([int(ids[i]) for i in indices], proxy_seed(seed, 0))["map50"]

    t0 = time.perf_counter()
    train_agent(x, budget, proxy_reward, {**options, "agent_iterations": iterations}, seed)
    without_s = time.perf_counter() - t0
    log(f"{iterations} iterations without the table {without_s:.1f}s ({calls['n']} proxy runs)")

    cycle_s = embed_s + records_s + agent_s + select_s
    paper = pd.read_csv(PAPER_DIR / "mgral_time.csv", comment="#").set_index("setting")
    note = (f"{len(pool.images)}-image pool, budget {budget}, {len(labeled.images)} labeled, {options['records']} "
            f"records of {options['proxy_iterations']} proxy iterations, {options['agent_iterations']} agent "
            f"iterations, solver {options['solver']}, device {device}")
    return pd.DataFrame([
        {"setting": "without_lookup_table", "ours_10_iterations_min": without_s / 60, "ours_one_cycle_min": np.nan,
         "paper_10_iterations_min": paper.loc["without_lookup_table", "time_10_iterations_min"],
         "paper_one_cycle_min": paper.loc["without_lookup_table", "time_one_cycle_min"],
         "ours_proxy_runs": calls["n"], "note": note},
        {"setting": "with_lookup_table", "ours_10_iterations_min": with_table_s / 60,
         "ours_one_cycle_min": cycle_s / 60,
         "paper_10_iterations_min": paper.loc["with_lookup_table", "time_10_iterations_min"],
         "paper_one_cycle_min": paper.loc["with_lookup_table", "time_one_cycle_min"],
         "ours_proxy_runs": options["records"] + full["fallbacks"],
         "note": f"one cycle = embeddings {embed_s:.1f}s + records {records_s:.1f}s + agent {agent_s:.1f}s "
                 f"(fallbacks {full['fallbacks']}) + selection {select_s:.3f}s"},
    ])


def _fmt(v) -> str:
    if isinstance(v, float):
        return "" if np.isnan(v) else f"{v:.3g}"
    return str(v)


def _markdown(df: pd.DataFrame, title: str, caption: str) -> str:
    cols = list(df.columns)
    head = "| " + " | ".join(cols) + " |\n|" + "---|" * len(cols) + "\n"
    body = "".join("| " + " | ".join(_fmt(r[c]) for c in cols) + " |\n" for _, r in df.iterrows())
    return f"## {title}\n\n{caption}\n\n{head}{body}"


def _write(df: pd.DataFrame, out_dir, stem: str, title: str, caption: str) -> list[Path]:
    out_dir = Path(out_dir)
    paths = [out_dir / f"{stem}.csv", out_dir / f"{stem}.md"]
    with atomic_path(paths[0]) as tmp:
        df.to_csv(tmp, index=False)
    with atomic_path(paths[1]) as tmp:
        tmp.write_text(_markdown(df, title, caption), encoding="utf-8")
    return paths


def write_time_table(df: pd.DataFrame, out_dir) -> list[Path]:
    return _write(df, out_dir, "mgral_time", "MGRAL time table: agent training with and without the lookup table",
                  "Minutes. Ours: measured on this machine (note column); paper: four GTX 1080Ti GPUs, VOC, "
                  "SSD300 with an ISD-SSD proxy.")


# ------------------------------------------------------------------ compute spent in an experiment
def _bench_seconds(path: Path) -> float:
    return float(pd.read_csv(path, sep="\t")["s"].iloc[0]) if path.is_file() else float("nan")


def compute_table(exp_dir, strategies: list[str], seeds: list[int], cycles: int) -> pd.DataFrame:
    """Per MGRAL run and selecting cycle: proxy runs of the table and of fallbacks, agent time, wall seconds
    of those jobs, and the mAP@0.5 of the cycle's model and of the next one (trained with the selection).
    ``zero_advantage_iterations``: agent iterations whose policy gradient was 0 (all of them: the agent never
    trained)."""
    rows = []
    for strategy in strategies:
        for seed in seeds:
            for c in range(cycles - 1):
                run = Path(exp_dir) / "runs" / strategy / f"seed{seed}" / f"cycle{c}"
                comp = read_json(run / "agent_compute.json")
                nxt = read_json(run.parent / f"cycle{c + 1}" / "metrics.json")
                bench = run / "benchmarks"
                record_wall = sum(_bench_seconds(p) for p in sorted(bench.glob("lookup_record*.tsv")))
                rows.append({"strategy": strategy, "seed": seed, "cycle": c,
                             "map50": read_json(run / "metrics.json")["map50"], "map50_next": nxt["map50"],
                             "records": comp["records"], "record_proxy_s": comp["record_proxy_seconds"],
                             "fallbacks": comp["fallbacks"], "fallback_s": comp["fallback_seconds"],
                             "beyond_threshold_without_fallback": comp["beyond_threshold_without_fallback"],
                             "agent_iterations": comp["agent_iterations"],
                             "zero_advantage_iterations": zero_advantage_iterations(comp["history"]),
                             "agent_s": comp["agent_seconds"],
                             "mean_lookup_ms": 1000 * comp["mean_reward_lookup_seconds"],
                             "records_wall_s": record_wall,
                             "train_agent_wall_s": _bench_seconds(bench / "train_agent.tsv"),
                             "embeddings_wall_s": _bench_seconds(bench / "score.tsv")})
    return pd.DataFrame(rows)


def write_compute_table(df: pd.DataFrame, out_dir) -> list[Path]:
    return _write(df, out_dir, "mgral_compute", "MGRAL: compute spent beside the mAP reached",
                  "Per seed and selecting cycle: map50 of the cycle's model, map50_next after adding MGRAL's batch; "
                  "proxy trainings of the lookup table (records) and of fallbacks, agent iterations with a zero advantage "
                  "(all of them: the agent never trained), agent seconds (without fallbacks), wall seconds of the "
                  "jobs (process start included).")
