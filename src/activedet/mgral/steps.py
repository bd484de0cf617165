"""MGRAL's steps: one lookup record, the table, the agent; and a whole cycle in one process.

The pipeline runs them as separate jobs (``lookup-record`` per record, ``lookup-table``,
``train-agent``, then ``select``); ``run_cycle`` chains them in-process for
``select-images`` and the time table.
"""
from __future__ import annotations

import time
from typing import Callable

import numpy as np
import pandas as pd

from ..data.coco import CocoData
from ..data.splits import unlabeled_ids
from ..io import InputError, atomic_path, read_parquet

# Kinds of random streams of a cycle (see stream_seed): the proxy trainings, the agent.
PROXY, AGENT = 0, 1
TABLE_COLUMNS = ["record", "image_ids", "map50", "teacher_map50", "seconds", "iterations", "n_pseudo_boxes",
                 "n_train", "n_val"]


def stream_seed(seed: int, cycle: int, kind: int, index: int = 0) -> int:
    """An integer seed per (seed, cycle, kind, index); fixed-length keys, so no two streams collide."""
    return int(np.random.SeedSequence([seed, cycle, kind, index]).generate_state(1)[0])


def proxy_seed(seed: int, cycle: int) -> int:
    """The one seed of every proxy training of a cycle (records and fallbacks): common random numbers.

    Same batch order and augmentation in every run, so two runs differ by their candidate batch
    alone, not by SGD noise (the lookup table compares them).
    """
    return stream_seed(seed, cycle, PROXY)


def zero_advantage_iterations(history: list[dict], tolerance: float = 1e-9) -> int:
    """Iterations whose advantage (reward − moving-average baseline, Eq. 3–4) is 0 within ``tolerance``.

    Such an iteration's policy gradient is 0: Adam leaves the agent where it was. When every iteration is one
    (the proxy rates every batch alike, e.g. a reward saturated at mAP 1.0) the agent never trains and its
    scores are the ranking of its initial weights.
    """
    return sum(abs(float(h["advantage"])) <= tolerance for h in history)


def read_embeddings(path) -> pd.DataFrame:
    return read_parquet(path, "embeddings table (score --strategy mgral)", ["image_id", "labeled", "embedding"])


def read_table(path) -> pd.DataFrame:
    return read_parquet(path, "lookup table (lookup-table)", ["record", "image_ids", "map50"])


def write_parquet(path, df: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)


def lookup_record(runner, labeled: CocoData, pool: CocoData, seed: int, cycle: int, record: int,
                  budget: int) -> dict:
    """One record: a random candidate batch of the unlabeled pool and its proxy mAP."""
    from .proxy import candidate_batch

    ids = candidate_batch(unlabeled_ids(pool, labeled), budget, seed, cycle, record)
    result = runner.run(ids, proxy_seed(seed, cycle))
    return {"record": record, "seed": seed, "cycle": cycle, "budget": budget, **result}


def gather_table(records: list[dict], sources: list[str] | None = None) -> pd.DataFrame:
    """The lookup table of a cycle's records; they must come from one seed, cycle and budget."""
    sources = sources or [f"record {i}" for i in range(len(records))]
    if len(records) < 2:
        raise InputError(f"a lookup table needs at least 2 records, got {len(records)}")
    for rec, src in zip(records, sources):
        missing = [k for k in TABLE_COLUMNS + ["seed", "cycle", "budget"] if k not in rec]
        if missing:
            raise InputError(f"{src}: not a lookup record (missing {', '.join(missing)})")
    first = records[0]
    for rec, src in zip(records, sources):
        for key in ("seed", "cycle", "budget"):
            if rec[key] != first[key]:
                raise InputError(f"{src}: {key} {rec[key]} differs from {sources[0]}'s {first[key]}: records of "
                                 f"different cycles or runs")
        if len(rec["image_ids"]) != rec["budget"]:
            raise InputError(f"{src}: {len(rec['image_ids'])} images but the budget is {rec['budget']}")
    numbers = [r["record"] for r in records]
    if len(set(numbers)) != len(numbers):
        raise InputError(f"record numbers repeat: {sorted(numbers)}")
    df = pd.DataFrame([{k: r[k] for k in TABLE_COLUMNS} for r in records])
    return df.sort_values("record", kind="mergesort").reset_index(drop=True)


def unlabeled_embeddings(emb: pd.DataFrame, labeled: CocoData, source: str) -> tuple[np.ndarray, np.ndarray]:
    """(image ids, embeddings [N, D]) of the unlabeled images, in image-id order (the agent's sequence)."""
    have = set(int(i) for i in emb.loc[emb["labeled"], "image_id"])
    if have != set(labeled.image_ids):
        raise InputError(f"{source}: its labeled images differ from {labeled.path}'s ({len(have)} vs "
                         f"{len(labeled.image_ids)}): embeddings of another cycle or run")
    unl = emb[~emb["labeled"]].sort_values("image_id", kind="mergesort")
    return unl["image_id"].to_numpy(dtype=np.int64), np.stack(unl["embedding"].to_numpy()).astype(np.float32)


def build_table(table_df: pd.DataFrame, ids: np.ndarray, x: np.ndarray, options: dict, budget: int, seed: int,
                source: str):
    from .lookup import LookupTable

    position = {int(i): k for k, i in enumerate(ids)}
    batches = []
    for rec in table_df.itertuples():
        rec_ids = [int(i) for i in rec.image_ids]
        outside = [i for i in rec_ids if i not in position]
        if outside:
            raise InputError(f"{source}: record {rec.record} has images {outside[:10]} that are not unlabeled in "
                             f"this cycle: a table of another cycle or run")
        if len(rec_ids) != budget:
            raise InputError(f"{source}: record {rec.record} has {len(rec_ids)} images but the budget is {budget}")
        batches.append(x[[position[i] for i in rec_ids]])
    return LookupTable(batches, table_df["map50"].astype(float).tolist(), options["solver"],
                       options["nearest_records"], options["sliced_projections"], options["sinkhorn_reg"], seed)


def train_agent_step(options: dict, emb: pd.DataFrame, table_df: pd.DataFrame, labeled: CocoData, budget: int,
                     seed: int, cycle: int, runner_factory: Callable[[], object] | None,
                     sources: tuple[str, str] = ("embeddings", "lookup table"),
                     log: Callable[[str], None] | None = None) -> tuple[object, pd.DataFrame, dict]:
    """Train the agent on the cycle's table; (agent, scores of the pool, compute spent).

    ``runner_factory()`` builds the proxy runner on the first fallback (loading the detector and
    the labeled images only when needed); ``None`` disables fallbacks.
    """
    from .agent import agent_scores, train_agent
    from .lookup import TableReward

    t_start = time.perf_counter()
    ids, x = unlabeled_embeddings(emb, labeled, sources[0])
    if budget > len(ids):
        raise InputError(f"{sources[0]}: active.budget ({budget}) is larger than the unlabeled pool "
                         f"({len(ids)} images left)")
    table = build_table(table_df, ids, x, options, budget, seed, sources[1])
    runner: dict = {}
    setup_s = 0.0

    def proxy(indices: np.ndarray) -> float:
        nonlocal setup_s
        if "r" not in runner:
            t0 = time.perf_counter()
            runner["r"] = runner_factory()
            setup_s = time.perf_counter() - t0
        k = len(reward.fallbacks)
        result = runner["r"].run([int(ids[i]) for i in indices], proxy_seed(seed, cycle))
        if log:
            log(f"fallback proxy run {k + 1}: mAP {result['map50']:.4f} in {result['seconds']:.1f}s")
        return result["map50"]

    reward = TableReward(table, x, proxy if runner_factory is not None else None, options["max_fallbacks"])
    agent, history = train_agent(x, budget, reward, options, stream_seed(seed, cycle, AGENT), table.mean_map, log)
    train_s = time.perf_counter() - t_start
    untrained = zero_advantage_iterations(history)
    if log and history and untrained == len(history):
        log(f"warning: every one of the {len(history)} rewards equalled the baseline (the table's records rate "
            f"{np.min(table_df['map50']):.4f} to {np.max(table_df['map50']):.4f}): the agent did not train, so "
            f"its selection is the ranking of its initial weights")
    scores = agent_scores(agent, x)
    by_id = dict(zip(ids.tolist(), scores.tolist()))
    frame = pd.DataFrame({"image_id": emb["image_id"].astype(np.int64), "labeled": emb["labeled"].astype(bool)})
    frame["score"] = [by_id.get(int(i), np.nan) for i in frame["image_id"]]
    fallback_s = sum(f["seconds"] for f in reward.fallbacks)
    compute = {
        "seed": seed, "cycle": cycle, "budget": budget, "solver": options["solver"],
        "records": int(table.initial_records), "record_proxy_seconds": float(table_df["seconds"].sum())
        if "seconds" in table_df else None,
        "threshold": table.threshold, "table_mean_map50": float(np.mean(table_df["map50"])),
        "fallbacks": len(reward.fallbacks), "fallback_seconds": fallback_s, "fallback_setup_seconds": setup_s,
        "fallback_runs": [{**{k: v for k, v in f.items() if k != "indices"},
                           "image_ids": sorted(int(ids[i]) for i in f["indices"])} for f in reward.fallbacks],
        "beyond_threshold_without_fallback": reward.beyond_without_fallback,
        "agent_iterations": len(history), "zero_advantage_iterations": untrained,
        "agent_seconds": train_s - fallback_s - setup_s,
        "reward_lookups": reward.lookups, "reward_lookup_seconds": reward.lookup_seconds,
        "mean_reward_lookup_seconds": reward.lookup_seconds / max(1, reward.lookups),
        "history": [{k: h[k] for k in ("iteration", "reward", "ref", "advantage", "log_prob", "seconds")}
                    for h in history],
    }
    return agent, frame, compute


def save_agent(path, agent, options: dict, image_ids: list[int], seed: int, cycle: int) -> None:
    import torch

    with atomic_path(path) as tmp:
        torch.save({"model": agent.state_dict(), "options": dict(options), "image_ids": list(image_ids),
                    "seed": seed, "cycle": cycle, "method": "mgral_agent"}, tmp)


def run_cycle(params: dict, options: dict, model, ckpt: dict, pool_dataset, labeled: CocoData, pool: CocoData,
              images_dir, budget: int, seed: int, cycle: int, device, batch_size: int = 64,
              log: Callable[[str], None] | None = None) -> tuple[pd.DataFrame, dict]:
    """A whole MGRAL selection in one process: embeddings, R records, table, agent; (agent scores, compute)."""
    from .embeddings import pool_embeddings
    from .proxy import ProxyRunner

    t0 = time.perf_counter()
    emb = pool_embeddings(model, pool_dataset, set(labeled.image_ids), device, batch_size, options)
    embed_s = time.perf_counter() - t0
    runner = ProxyRunner(params, options, None, labeled, pool, images_dir, seed, model=model, ckpt=ckpt)
    records = []
    for r in range(options["records"]):
        records.append(lookup_record(runner, labeled, pool, seed, cycle, r, budget))
        if log:
            log(f"record {r + 1}/{options['records']}: mAP {records[-1]['map50']:.4f} "
                f"in {records[-1]['seconds']:.1f}s")
    table_df = gather_table(records)
    _, scores, compute = train_agent_step(options, emb, table_df, labeled, budget, seed, cycle, lambda: runner,
                                          log=log)
    compute.update(embedding_seconds=embed_s, total_seconds=time.perf_counter() - t0)
    return scores, compute
