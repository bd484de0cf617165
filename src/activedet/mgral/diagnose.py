"""MGRAL's reward diagnostic: is the reward the agent learns from a signal about the value of a batch?

An offline check, never part of the method (it reads ground truth the method never sees). For one cycle it
draws random candidate batches of the unlabeled pool and rates each three ways:

- the lookup table's estimate (inverse-distance weighting of the records' proxy mAPs by Wasserstein
  distance, :meth:`activedet.mgral.lookup.LookupTable.estimate`): what the agent is trained on;
- the proxy's reward (:meth:`activedet.mgral.proxy.ProxyRunner.run`: the semi-supervised proxy trained on the
  labeled set + the batch with the teacher's pseudo labels, mAP@0.5 on the labeled set's held-out part);
- the true gain: mAP@0.5 of the real detector retrained with the recipe of every cycle on L ∪ B with the
  ground-truth labels of B, on a labeled validation split that no strategy and no training sees, minus the
  cycle's own model's mAP@0.5 there.

It reports the Spearman rank correlations between the three with bootstrap 95% intervals (over batches),
and the proxy's noise floor: the same batch rated under two proxy seeds.

Two variants try fixes without touching the method: ``proxy_teacher="heldout"`` rates the proxy from a
teacher trained (the cycle's recipe) on the proxy's training part only, so the proxy's validation images are
new to it (the method's teacher, the cycle model, was trained on them); ``true_gains`` reuses the true gains
of an earlier run of the same cycle and seed (the same batches) instead of retraining every batch.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from ..data.coco import CocoData
from ..data.splits import merge_labels, unlabeled_ids
from ..io import InputError
from .proxy import ProxyRunner, candidate_batch, validation_split
from .steps import AGENT, build_table, proxy_seed, stream_seed, unlabeled_embeddings

# Record numbers of the diagnostic's batches: far from the lookup table's records, so no batch is a record's.
FIRST_BATCH = 100_000
NOISE_STREAM = AGENT + 1  # the second proxy seed of the noise floor, a stream no step of the method uses


def spearman_ci(x, y, n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> tuple[float, float, float]:
    """Spearman's rank correlation of paired samples and its percentile bootstrap interval over the pairs.

    Returns (rho, low, high); NaN where fewer than 3 pairs or a constant resample leaves it undefined.
    Bootstrap resamples of constant data are skipped (scipy's spearmanr: scipy.stats).
    """
    from scipy.stats import spearmanr

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < 3:
        return float("nan"), float("nan"), float("nan")
    rho = float(spearmanr(x, y).statistic)
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(x), len(x))
        if np.ptp(x[idx]) == 0 or np.ptp(y[idx]) == 0:
            continue
        boots.append(spearmanr(x[idx], y[idx]).statistic)
    if not boots:
        return rho, float("nan"), float("nan")
    lo, hi = np.percentile(boots, [50 * (1 - level), 50 * (1 + level)])
    return rho, float(lo), float(hi)


def diagnose_cycle(params: dict, options: dict, model_path, images_dir, labeled: CocoData, pool: CocoData,
                   embeddings: pd.DataFrame, table_df: pd.DataFrame, val: CocoData, val_images, budget: int,
                   seed: int, cycle: int, work_dir, n_batches: int = 16, noise_batches: int = 4,
                   n_boot: int = 2000, log: Callable[[str], None] = print, proxy_teacher: str = "cycle",
                   true_gains: pd.DataFrame | None = None) -> tuple[pd.DataFrame, dict]:
    """Rate ``n_batches`` random candidate batches of one cycle by table, proxy and true gain.

    ``embeddings`` and ``table_df`` are the cycle's pipeline outputs (``score --strategy mgral``,
    ``lookup-table``); ``model_path`` is the cycle's plain detector, trained on ``labeled``; ``pool`` holds the
    ground truth (the oracle); ``val`` / ``val_images`` the validation split. The retrained detectors go to
    ``work_dir`` (one file, overwritten). ``proxy_teacher`` "cycle" (the method's) or "heldout" (trained into
    ``work_dir`` on the proxy's training part); ``true_gains`` an earlier run's table (columns ``batch``,
    ``image_ids`` as space-separated ids, ``true_map50``) whose batches must be this run's (InputError
    otherwise). Returns (one row per batch, summary with correlations and noise floor).
    """
    from ..checkpoint import load_model
    from ..data.dataset import detector_dataset
    from ..device import resolve_device
    from ..engine.train import train_detector

    device = resolve_device(params["device"])
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    unl = unlabeled_ids(pool, labeled)
    batches = [candidate_batch(unl, budget, seed, cycle, FIRST_BATCH + k) for k in range(n_batches)]
    # checked before any training: an earlier run's true gains must be of these very batches
    earlier = _earlier_true_maps(true_gains, batches) if true_gains is not None else None
    teacher_path = model_path
    if proxy_teacher == "heldout":
        teacher_path = work / "proxy_teacher.pt"
        train_ids, _ = validation_split(labeled.image_ids, options["val_fraction"], seed)  # the proxy's own split
        train_detector(params, detector_dataset(params, labeled.subset(train_ids), images_dir), teacher_path,
                       seed, log=lambda m: None)
    elif proxy_teacher != "cycle":
        raise InputError(f"proxy teacher must be 'cycle' or 'heldout', got {proxy_teacher!r}")
    runner = ProxyRunner(params, options, teacher_path, labeled, pool, images_dir, seed)
    if proxy_teacher == "heldout":
        log(f"held-out proxy teacher ({len(runner.train_ids)} images) on the proxy's validation part: "
            f"mAP@0.5 {runner.teacher_map:.4f}")
    ids, x = unlabeled_embeddings(embeddings, labeled, "embeddings")
    table = build_table(table_df, ids, x, options, budget, seed, "lookup table")
    position = {int(i): k for k, i in enumerate(ids)}
    model, ckpt = load_model(model_path, device)
    val_ds = detector_dataset(params, val, val_images, ckpt["categories"])
    base = _val_map(model, val, val_ds, device)
    log(f"cycle model on the validation split: mAP@0.5 {base:.4f}")
    rows = []
    for k, batch in enumerate(batches):
        t0 = time.perf_counter()
        estimate, nearest = table.estimate(x[[position[i] for i in batch]])
        proxy = runner.run(batch, proxy_seed(seed, cycle))["map50"]
        again = runner.run(batch, stream_seed(seed, cycle, NOISE_STREAM, k))["map50"] if k < noise_batches else None
        if earlier is not None:
            true_map = earlier[k]
        else:
            merged = merge_labels(labeled, batch, pool, budget)
            train_detector(params, detector_dataset(params, merged, images_dir), work / "retrained.pt", seed,
                           log=lambda m: None)
            retrained, _ = load_model(work / "retrained.pt", device)
            true_map = _val_map(retrained, val, val_ds, device)
        rows.append({"batch": k, "image_ids": batch, "table_estimate": estimate, "nearest_distance": nearest,
                     "beyond_threshold": bool(table.beyond_threshold(nearest)), "proxy_reward": proxy,
                     "proxy_reward_seed2": again, "true_map50": true_map, "true_gain": true_map - base,
                     "seconds": time.perf_counter() - t0})
        log(f"batch {k + 1}/{n_batches}: table {estimate:.4f}  proxy {proxy:.4f}  true gain {true_map - base:+.4f}"
            f"  ({rows[-1]['seconds']:.0f}s)")
    df = pd.DataFrame(rows)
    return df, summarize(df, base, n_boot, seed, {"seed": seed, "cycle": cycle, "budget": budget,
                                                   "n_labeled": len(labeled.images), "n_val": len(val.images),
                                                   "n_records": len(table_df), "proxy_teacher": proxy_teacher,
                                                   "proxy_teacher_map50": runner.teacher_map,
                                                   "proxy_iterations": options["proxy_iterations"],
                                                   "true_gains_reused": earlier is not None})


def _earlier_true_maps(table: pd.DataFrame, batches: list[list[int]]) -> list[float]:
    """The true mAPs of an earlier run for ``batches``, in order; InputError unless it rated the same batches."""
    by_batch = {int(r["batch"]): r for _, r in table.iterrows()}
    out = []
    for k, batch in enumerate(batches):
        row = by_batch.get(k)
        if row is None or [int(i) for i in str(row["image_ids"]).split()] != batch:
            raise InputError(f"the earlier diagnostic rated other batches than this one (batch {k}): give it the "
                             f"same --seed, --cycle, --labeled, --pool and --budget")
        out.append(float(row["true_map50"]))
    return out


def summarize(df: pd.DataFrame, base_map: float, n_boot: int, seed: int, meta: dict) -> dict:
    """The correlations (with intervals) between the three ratings, and the proxy's noise floor."""
    out = {**meta, "n_batches": len(df), "base_map50": base_map}
    for name, a, b in (("proxy_vs_true_gain", "proxy_reward", "true_gain"),
                       ("table_vs_proxy", "table_estimate", "proxy_reward"),
                       ("table_vs_true_gain", "table_estimate", "true_gain")):
        rho, lo, hi = spearman_ci(df[a], df[b], n_boot, seed)
        out[name] = {"spearman": rho, "ci95": [lo, hi]}
    pairs = df.dropna(subset=["proxy_reward_seed2"])
    diff = (pairs["proxy_reward"] - pairs["proxy_reward_seed2"]).to_numpy(dtype=float)
    out["proxy_noise"] = {
        "pairs": len(diff),
        # one rating's standard deviation from the difference of two independent ones: sd(d) / sqrt(2)
        "sd_one_rating": float(np.sqrt(np.mean(diff ** 2) / 2)) if len(diff) else None,
        "sd_between_batches": float(df["proxy_reward"].std(ddof=1)) if len(df) > 1 else None,
    }
    out["true_gain"] = {"mean": float(df["true_gain"].mean()), "sd": float(df["true_gain"].std(ddof=1))
                        if len(df) > 1 else None}
    out["beyond_threshold"] = int(df["beyond_threshold"].sum())
    return out


def _val_map(model, val: CocoData, dataset, device) -> float:
    import torch

    from ..engine.predict import predict
    from ..evaluation import voc_map

    with torch.no_grad():
        dets = predict(model.eval(), dataset, device, 64)
    return float(voc_map(val.to_dict(), dets, iou_threshold=0.5, use_07_metric=True)["map"])
