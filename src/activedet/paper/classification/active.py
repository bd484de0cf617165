"""Active learning for image classification: one method and seed, every cycle (MI-AOD Table 2)."""
from __future__ import annotations

import time

import numpy as np
import pandas as pd
import torch

from ...io import InputError
from .data import ClassificationData
from .train import discrepancy, predict, train_classifier

# method -> (trained with IUL, selection). The paper's Table 2 is random selection with and without IUL.
METHODS = {"random": (False, "random"), "iul_random": (True, "random"),
           "entropy": (False, "entropy"), "iul": (True, "discrepancy")}


def selection_scores(l1: torch.Tensor, l2: torch.Tensor, how: str) -> np.ndarray:
    """Higher = more worth labeling: entropy of f1's softmax (f1 predicts, as in MI-AOD), or the heads' discrepancy."""
    if how == "entropy":
        p = l1.softmax(dim=-1)
        return (-(p * p.clamp_min(1e-12).log()).sum(dim=-1)).numpy()
    if how == "discrepancy":
        return discrepancy(l1, l2).numpy()
    raise ValueError(how)


def top_b(scores: np.ndarray, candidates: np.ndarray, budget: int) -> np.ndarray:
    """The ``budget`` candidates with the highest scores; ties by pool index (deterministic)."""
    order = np.lexsort((candidates, -scores))
    return candidates[order[:budget]]


def sizes(n_pool: int, cfg: dict) -> tuple[int, int]:
    n0 = max(1, round(cfg["initial_fraction"] * n_pool))
    b = max(1, round(cfg["budget_fraction"] * n_pool))
    if n0 + b * (cfg["cycles"] - 1) > n_pool:
        raise InputError(f"paper_reports.table2: {n0} initial + {b} x {cfg['cycles'] - 1} cycles exceeds the pool "
                         f"({n_pool} images)")
    return n0, b


def run(cfg: dict, data: ClassificationData, method: str, seed: int, device: torch.device, log=print
        ) -> pd.DataFrame:
    """Accuracy on the test split after each cycle's training; the initial set depends only on the seed."""
    if method not in METHODS:
        raise InputError(f"paper_reports.table2.methods: unknown method {method!r} (known: {', '.join(METHODS)})")
    iul, how = METHODS[method]
    n_pool = len(data.y_pool)
    n0, budget = sizes(n_pool, cfg)
    labeled = np.sort(np.random.default_rng(seed).choice(n_pool, n0, replace=False))
    rows = []
    for cycle in range(cfg["cycles"]):
        unlabeled = np.setdiff1d(np.arange(n_pool), labeled)
        # As MI-AOD: the unlabeled images a cycle trains on are a random subset as large as the labeled set.
        n_u = min(len(unlabeled), max(1, round(cfg["unlabeled_ratio"] * len(labeled)))) if iul else 0
        u_train = np.sort(np.random.default_rng([seed, cycle]).choice(unlabeled, n_u, replace=False))
        t0 = time.perf_counter()
        model, info = train_classifier(cfg, data.x_pool[labeled], data.y_pool[labeled], data.x_pool[u_train],
                                       data.num_classes, seed * 1000 + cycle, iul, device)
        seconds = time.perf_counter() - t0
        l1, _ = predict(model, data.x_test, device, cfg["eval_batch_size"])
        accuracy = float((l1.argmax(dim=1).numpy() == data.y_test).mean())
        rows.append({"method": method, "seed": seed, "cycle": cycle, "n_labeled": len(labeled),
                     "fraction": len(labeled) / n_pool, "accuracy": accuracy, "iul": iul, "selection": how,
                     "iterations": info["iterations"], "train_seconds": seconds, "dataset": data.name})
        log(f"{method} seed {seed} cycle {cycle}: {len(labeled)} labeled, accuracy {accuracy:.4f} ({seconds:.1f}s)")
        if cycle == cfg["cycles"] - 1:
            break
        if how == "random":
            chosen = np.random.default_rng([seed, cycle, 1]).choice(unlabeled, budget, replace=False)
        else:
            l1u, l2u = predict(model, data.x_pool[unlabeled], device, cfg["eval_batch_size"])
            chosen = top_b(selection_scores(l1u, l2u, how), unlabeled, budget)
        labeled = np.sort(np.concatenate([labeled, chosen]))
    return pd.DataFrame(rows)
