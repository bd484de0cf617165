"""MGRAL: Wasserstein weighting against POT and by hand, the fallback threshold, the moving baseline,
the Plackett-Luce likelihood of Gumbel-top-k samples, the policy-gradient sign, valid selections,
and one cycle end to end through the CLI and the Snakemake fan-out."""
import itertools
import json
import math
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import ot
import pandas as pd
import pytest
import torch
import yaml

from activedet import params as P
from activedet.io import InputError
from activedet.mgral.agent import (MovingBaseline, SamplingAgent, agent_scores, gumbel_top_k, plackett_luce_log_prob,
                                   policy_gradient_step, train_agent)
from activedet.mgral.embeddings import project
from activedet.mgral.lookup import LookupTable, TableReward, inverse_distance_estimate, random_projections, wasserstein
from activedet.mgral.proxy import candidate_batch, validation_split
from activedet.mgral.steps import gather_table, stream_seed, train_agent_step
from activedet.strategies import build_strategy

from helpers.mgral import TINY, tiny_mgral_cycle
from helpers.pipeline import BIN, ROOT


def brute_w2(x, y):
    """W2 between equal-size uniform sets: the best permutation (Birkhoff: an optimal plan is one)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    return math.sqrt(min(np.mean(((x - y[list(p)]) ** 2).sum(1)) for p in itertools.permutations(range(len(y)))))


# ------------------------------------------------------------------ Wasserstein distances and weighting
def test_exact_distance_by_hand_and_against_brute_force():
    assert wasserstein([[0.0], [1.0]], [[2.0], [5.0]], "exact") == pytest.approx(math.sqrt((4 + 16) / 2))
    assert wasserstein([[0, 0], [1, 0]], [[0, 1], [1, 1]], "exact") == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    for _ in range(5):
        x, y = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
        assert wasserstein(x, y, "exact") == pytest.approx(brute_w2(x, y), rel=1e-9)


def test_sliced_table_distances_equal_pots_sliced_wasserstein_on_the_same_directions():
    rng = np.random.default_rng(1)
    records = [rng.normal(size=(6, 4)) + k for k in range(3)]
    table = LookupTable(records, [0.1, 0.2, 0.3], solver="sliced", n_projections=16, seed=3)
    q = rng.normal(size=(6, 4))
    w = np.full(6, 1 / 6)
    pot = [ot.sliced_wasserstein_distance(q, r, w, w, projections=table.projections, p=2) for r in records]
    assert table.distances(q) == pytest.approx(pot, rel=1e-10)
    # the directions are unit vectors, fixed by the seed
    assert np.linalg.norm(table.projections, axis=0) == pytest.approx(np.ones(16))
    assert np.array_equal(random_projections(4, 16, 3), table.projections)


def test_sinkhorn_approaches_the_exact_distance():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(5, 2)), rng.normal(size=(5, 2)) + 2.0
    exact = wasserstein(x, y, "exact")
    assert wasserstein(x, y, "sinkhorn", sinkhorn_reg=0.005) == pytest.approx(exact, rel=0.02)


def test_inverse_distance_estimate_by_hand():
    d, m = np.array([2.0, 1.0, 8.0, 4.0]), np.array([0.2, 0.1, 0.9, 0.3])
    # the 3 nearest: distances 1, 2, 4 -> weights 1, 1/2, 1/4
    assert inverse_distance_estimate(d, m, 3) == pytest.approx((0.1 + 0.2 / 2 + 0.3 / 4) / (1 + 0.5 + 0.25))
    assert inverse_distance_estimate(d, m, 1) == pytest.approx(0.1)
    assert inverse_distance_estimate(np.array([0.5, 0.0, 0.0]), np.array([0.9, 0.2, 0.4]), 3) == pytest.approx(0.3)


def test_table_estimate_weights_pots_exact_distances():
    rng = np.random.default_rng(4)
    records = [rng.normal(size=(4, 3)) + k for k in range(4)]
    maps = [0.3, 0.5, 0.4, 0.6]
    table = LookupTable(records, maps, solver="exact", nearest=2)
    q = rng.normal(size=(4, 3)) + 0.7
    w = np.full(4, 0.25)
    d = np.array([math.sqrt(ot.emd2(w, w, ot.dist(q, r))) for r in records])
    i, j = np.argsort(d)[:2]
    want = (maps[i] / d[i] + maps[j] / d[j]) / (1 / d[i] + 1 / d[j])
    estimate, nearest = table.estimate(q)
    assert estimate == pytest.approx(want) and nearest == pytest.approx(d.min())


# ------------------------------------------------------------------ threshold and fallback
def line_table(max_fallbacks=1):
    """Three 1-D records 10 and 20 apart: W2 between translates is the shift, so every distance is known."""
    records = [np.array([[0.0], [1.0]]), np.array([[10.0], [11.0]]), np.array([[30.0], [31.0]])]
    table = LookupTable(records, [0.2, 0.4, 0.6], solver="exact", nearest=3)
    calls = []

    def proxy(indices):
        calls.append(list(indices))
        return 0.77

    return table, calls, proxy


def test_threshold_is_mean_minus_std_of_the_records_pairwise_distances():
    table, _, _ = line_table()
    pair = [10.0, 30.0, 20.0]
    assert table.threshold == pytest.approx(np.mean(pair) - np.std(pair))  # 20 - 8.165


def test_fallback_triggers_exactly_beyond_the_threshold():
    table, calls, proxy = line_table()
    t = table.threshold
    base = np.array([[0.0], [1.0]])
    # query points: record 0 shifted left by s (nearest record: 0, at distance s)
    inside, beyond = base - t * (1 - 1e-9), base - t * (1 + 1e-9)
    emb = np.concatenate([inside, beyond, base - 3 * t])
    reward = TableReward(table, emb, proxy, max_fallbacks=1)
    assert reward(np.array([0, 1])) == pytest.approx(table.estimate(inside)[0])
    assert calls == [] and len(table.maps) == 3
    assert reward(np.array([2, 3])) == 0.77  # beyond: a real proxy run, added to the table
    assert calls == [[2, 3]] and len(table.maps) == 4 and table.maps[-1] == 0.77
    assert len(reward.fallbacks) == 1 and reward.fallbacks[0]["nearest_distance"] == pytest.approx(t * (1 + 1e-9))
    # the same batch again is now in the table (distance 0): its proxy mAP, no new run
    assert reward(np.array([2, 3])) == pytest.approx(0.77) and len(calls) == 1
    # past max_fallbacks a far batch keeps the estimate and is counted
    far = reward(np.array([4, 5]))
    assert len(calls) == 1 and reward.beyond_without_fallback == 1 and 0.2 <= far <= 0.77
    assert table.threshold == pytest.approx(20 - np.std([10.0, 30.0, 20.0]))  # fallbacks never move it


# ------------------------------------------------------------------ agent: baseline, sampling, gradient
def test_moving_baseline_update_by_hand():
    b = MovingBaseline(0.5, initial=0.3)
    assert b.update(0.5) == pytest.approx(0.1) and b.ref == pytest.approx(0.4)
    assert b.update(0.1) == pytest.approx(-0.15) and b.ref == pytest.approx(0.25)
    first = MovingBaseline(0.5)
    assert first.update(0.42) == 0.0 and first.ref == 0.42
    slow = MovingBaseline(0.9, 1.0)
    assert slow.update(0.0) == pytest.approx(-0.9) and slow.ref == pytest.approx(0.9)


def test_plackett_luce_log_prob_is_the_sequential_softmax_and_sums_to_one():
    s = torch.tensor([0.3, -1.0, 2.0, 0.5])
    e = torch.exp(s)
    want = math.log(e[2] / e.sum()) + math.log(e[0] / (e.sum() - e[2]))
    assert plackett_luce_log_prob(s, torch.tensor([2, 0])).item() == pytest.approx(want, rel=1e-6)
    total = sum(math.exp(plackett_luce_log_prob(s, torch.tensor(o)).item())
                for o in itertools.permutations(range(4), 2))
    assert total == pytest.approx(1.0, rel=1e-6)
    # stable when the drawn items hold nearly all the mass
    big = torch.tensor([60.0, 50.0, 0.0], dtype=torch.float64)
    want = -math.log1p(math.exp(-10) + math.exp(-60)) - math.log1p(math.exp(-50))
    assert plackett_luce_log_prob(big, torch.tensor([0, 1])).item() == pytest.approx(want, rel=1e-9)


def test_gumbel_top_k_samples_follow_the_plackett_luce_likelihood():
    s = torch.tensor([1.0, 0.0, -0.5, 0.7])
    g = torch.Generator().manual_seed(0)
    n = 20000
    counts: dict = {}
    for _ in range(n):
        o = tuple(gumbel_top_k(s, 2, g).tolist())
        counts[o] = counts.get(o, 0) + 1
    for o in itertools.permutations(range(4), 2):
        p = math.exp(plackett_luce_log_prob(s, torch.tensor(o)).item())
        assert counts.get(o, 0) / n == pytest.approx(p, abs=4 * math.sqrt(p * (1 - p) / n) + 1e-3)


def test_agent_is_an_lstm_over_embedding_and_previous_score():
    agent = SamplingAgent()
    assert isinstance(agent.lstm, torch.nn.LSTM)
    assert (agent.lstm.input_size, agent.lstm.hidden_size) == (257, 257)
    linears = [m for m in agent.decoder if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 2 and linears[-1].out_features == 1
    torch.manual_seed(0)
    small = SamplingAgent(3, 5, 4, sequence_length=None)
    x = torch.randn(7, 3)
    s = small(x)
    # by hand: step i reads [x_i, s_{i-1}] (s_{-1} = 0)
    state, prev, manual = None, torch.zeros(1), []
    for i in range(7):
        out, state = small.lstm(torch.cat([x[i], prev]).view(1, 1, -1), state)
        prev = small.decoder(out.view(1, -1)).view(1)
        manual.append(prev)
    assert torch.allclose(s, torch.cat(manual), atol=1e-6)
    # sequence_length cuts the pool into sequences read side by side, each from a fresh state
    small.sequence_length = 3
    parts = []
    for a in range(0, 7, 3):
        small.sequence_length = None
        parts.append(small(x[a:a + 3]))
    small.sequence_length = 3
    assert torch.allclose(small(x), torch.cat(parts), atol=1e-6)


@pytest.mark.parametrize("reward,sign", [(0.9, 1), (0.1, -1)])
def test_one_policy_gradient_step_makes_a_better_than_baseline_batch_more_likely(reward, sign):
    torch.manual_seed(0)
    agent = SamplingAgent(4, 8, 8, sequence_length=None)
    x = torch.randn(6, 4)
    order = gumbel_top_k(agent(x), 2, torch.Generator().manual_seed(7))  # what the step will sample
    before = plackett_luce_log_prob(agent(x), order).item()
    opt = torch.optim.SGD(agent.parameters(), lr=0.05)
    seen = []
    h = policy_gradient_step(agent, opt, x, 2, lambda idx: seen.append(list(idx)) or reward,
                             MovingBaseline(0.5, initial=0.5), torch.Generator().manual_seed(7))
    assert seen == [order.tolist()] and math.copysign(1, h["advantage"]) == sign
    after = plackett_luce_log_prob(agent(x), order).item()
    assert math.copysign(1, after - before) == sign


def test_agent_learns_a_toy_reward():
    """Reward = share of the batch among images 0-2 (told apart by their embedding): after training the
    deterministic top-3 is exactly those."""
    x = np.eye(8, dtype=np.float32)[[0, 1, 2, 3, 4, 5, 6, 7]] + 0.0
    good = {0, 1, 2}
    options = {"hidden_size": 16, "decoder_hidden": 16, "agent_lr": 0.03, "baseline_beta": 0.5,
               "agent_iterations": 150, "temperature": 1.0, "grad_clip": None, "sequence_length": None}
    agent, history = train_agent(x, 3, lambda idx: len(good & set(idx.tolist())) / 3, options, seed=0)
    top = set(np.argsort(-agent_scores(agent, x))[:3].tolist())
    assert top == good
    assert np.mean([h["reward"] for h in history[-20:]]) > np.mean([h["reward"] for h in history[:20]])


# ------------------------------------------------------------------ selection, splits, table
def synthetic_cycle(n_pool=30, n_labeled=6, dim=8, budget=5, records=3, seed=0):
    from activedet.data.coco import CocoData

    rng = np.random.default_rng(seed)
    ids = np.arange(100, 100 + 3 * n_pool, 3)
    labeled_ids = sorted(rng.choice(ids, n_labeled, replace=False).tolist())
    emb = pd.DataFrame({"image_id": ids, "labeled": np.isin(ids, labeled_ids), "score": np.nan,
                        "embedding": list(rng.normal(size=(n_pool, dim)).astype(np.float32))})
    labeled = CocoData("labeled.json", [{"id": int(i)} for i in labeled_ids], [], [], {})
    unl = sorted(set(ids.tolist()) - set(labeled_ids))
    recs = [{"record": r, "seed": 0, "cycle": 0, "budget": budget, "image_ids": candidate_batch(unl, budget, 0, 0, r),
             "map50": 0.3 + 0.05 * r, "teacher_map50": 0.3, "seconds": 1.0, "iterations": 5, "n_pseudo_boxes": 0,
             "n_train": 5, "n_val": 1} for r in range(records)]
    return emb, labeled, gather_table(recs)


def mgral_options(**over):
    return {**P.load({"strategies": {"mgral": {"agent_iterations": 5, "sequence_length": 8, **over}}})
            ["strategies"]["mgral"]}


@pytest.mark.parametrize("budget", [1, 5, 17])
def test_agent_selection_is_exactly_b_distinct_unlabeled_images(budget):
    emb, labeled, table = synthetic_cycle(budget=budget)
    _, scores, compute = train_agent_step(mgral_options(), emb, table, labeled, budget, 0, 0, None)
    strategy = build_strategy("mgral", P.load(None))
    chosen = strategy.select(scores, budget, np.random.default_rng(0))
    unl = set(scores.loc[~scores["labeled"], "image_id"].tolist())
    assert len(chosen) == budget == len(set(chosen)) and set(chosen) <= unl
    assert all(isinstance(i, int) for i in chosen)
    assert chosen == scores[~scores["labeled"]].nlargest(budget, "score")["image_id"].tolist()
    assert scores.loc[scores["labeled"], "score"].isna().all()
    assert compute["agent_iterations"] == 5 and compute["records"] == 3 and compute["fallbacks"] == 0


def test_agent_without_a_reward_signal_does_not_train_and_says_so(tmp_path):
    """A table whose records all rate alike (a proxy saturated at mAP 1.0) gives a zero advantage at every
    iteration: the selection is the same whatever that rating is, the log warns, and the compute record and
    the compute table count the iterations. A table that varies trains the agent."""
    from activedet.mgral.measure import compute_table

    emb, labeled, table = synthetic_cycle()
    picks, computes, logs = [], [], []
    for value in (0.5, 1.0):
        _, scores, compute = train_agent_step(mgral_options(), emb, table.assign(map50=value), labeled, 5, 0, 0,
                                              None, log=logs.append)
        picks.append(scores[~scores["labeled"]].nlargest(5, "score")["image_id"].tolist())
        computes.append(compute)
    assert picks[0] == picks[1]
    assert [c["zero_advantage_iterations"] for c in computes] == [5, 5]
    assert sum("warning: every one of the 5 rewards equalled the baseline" in m for m in logs) == 2
    logs.clear()
    _, _, varied = train_agent_step(mgral_options(), emb, table, labeled, 5, 0, 0, None, log=logs.append)
    assert varied["zero_advantage_iterations"] < 5 and not any("warning" in m for m in logs)
    # mgral-compute's table carries the count (read from the history, so older compute files work too)
    run = tmp_path / "runs" / "mgral" / "seed0"
    (run / "cycle0").mkdir(parents=True)
    (run / "cycle1").mkdir()
    old = {k: v for k, v in computes[1].items() if k != "zero_advantage_iterations"}
    (run / "cycle0" / "agent_compute.json").write_text(json.dumps(old))
    for c, m in ((0, 0.5), (1, 0.6)):
        (run / f"cycle{c}" / "metrics.json").write_text(json.dumps({"map50": m}))
    row = compute_table(tmp_path, ["mgral"], [0], 2).iloc[0]
    assert row["zero_advantage_iterations"] == row["agent_iterations"] == 5


def test_selecting_from_embeddings_alone_is_refused():
    emb, _, _ = synthetic_cycle()
    with pytest.raises(InputError, match="agent's scores"):
        build_strategy("mgral", P.load(None)).select(emb, 3, np.random.default_rng(0))


def test_agent_training_is_deterministic_for_a_seed():
    emb, labeled, table = synthetic_cycle()
    a = train_agent_step(mgral_options(), emb, table, labeled, 5, 0, 0, None)[1]
    b = train_agent_step(mgral_options(), emb, table, labeled, 5, 0, 0, None)[1]
    c = train_agent_step(mgral_options(), emb, table, labeled, 5, 1, 0, None)[1]
    assert a.equals(b) and not a.equals(c)


def test_tables_of_another_cycle_are_refused():
    emb, labeled, table = synthetic_cycle()
    table.at[0, "image_ids"] = list(table.at[0, "image_ids"][:-1]) + [int(labeled.image_ids[0])]
    with pytest.raises(InputError, match="not unlabeled in this cycle"):
        train_agent_step(mgral_options(), emb, table, labeled, 5, 0, 0, None)
    recs = [{"record": r, "seed": 0, "cycle": r, "budget": 2, "image_ids": [1, 2], "map50": 0.1, "teacher_map50": 0.1,
             "seconds": 1, "iterations": 1, "n_pseudo_boxes": 0, "n_train": 1, "n_val": 1} for r in range(2)]
    with pytest.raises(InputError, match="r1.json: cycle 1 differs"):
        gather_table(recs, ["r0.json", "r1.json"])


def test_validation_split_and_candidate_batches():
    ids = list(range(10, 60))
    train, val = validation_split(ids, 0.2, seed=3)
    assert len(val) == 10 and sorted(train + val) == ids and not set(train) & set(val)
    assert validation_split(ids[::-1], 0.2, seed=3) == (train, val)  # fixed by the seed, not the order
    assert validation_split(ids, 0.2, seed=4)[1] != val
    assert validation_split([1, 2], 0.9, seed=0)[0] != []  # at least one image left to train on
    batches = [candidate_batch(ids, 7, 0, 1, r) for r in range(3)]
    assert all(len(b) == 7 == len(set(b)) and set(b) <= set(ids) for b in batches)
    assert batches[0] != batches[1] and candidate_batch(ids, 7, 0, 1, 0) == batches[0]
    seeds = {stream_seed(s, c, k, i) for s in (0, 1) for c in (0, 1) for k in (0, 1, 2) for i in (0, 1)}
    assert len(seeds) == 24


def test_projection_pads_to_256_and_keeps_distance_ratios():
    rng = np.random.default_rng(0)
    f = rng.normal(size=(40, 12)) * np.arange(1, 13)
    z = project(f)
    assert z.shape == (40, 256) and not z[:, 12:].any()
    assert z[:, 0].std() == pytest.approx(1.0, rel=1e-5)
    d_in = np.linalg.norm(f[:, None] - f[None], axis=-1)
    d_out = np.linalg.norm(z[:, None].astype(float) - z[None], axis=-1)
    mask = d_in > 0
    ratio = d_out[mask] / d_in[mask]
    assert ratio == pytest.approx(np.full(ratio.shape, ratio[0]), rel=1e-4)  # a rotation and one scale
    assert project(rng.normal(size=(500, 300)), 256).shape == (500, 256)


# ------------------------------------------------------------------ one cycle end to end



def test_one_mgral_cycle_end_to_end_through_the_cli(tmp_path):
    from activedet.cli import main

    c = tiny_mgral_cycle(tmp_path)
    run, ps, common = c.run, json.dumps(TINY), c.common
    emb = pd.read_parquet(c.scores)
    assert len(emb) == 40 and emb["labeled"].sum() == 10 and all(len(e) == 256 for e in emb["embedding"])
    rec = json.loads(Path(c.records[0]).read_text())
    labeled_ids = {im["id"] for im in json.loads(Path(c.labeled).read_text())["images"]}
    assert len(rec["image_ids"]) == 6 and not set(rec["image_ids"]) & labeled_ids
    assert 0.0 <= rec["map50"] <= 1.0 and rec["n_val"] == 2 and rec["n_train"] == 8  # 20% of 10 held out
    # same seed, same record: the same batch and the same proxy mAP
    again = tmp_path / "again.json"
    assert main(["lookup-record", *common, "--record", "0", "--out", str(again)]) == 0
    assert {k: v for k, v in json.loads(again.read_text()).items() if k != "seconds"} == \
        {k: v for k, v in rec.items() if k != "seconds"}
    assert list(pd.read_parquet(c.table)["record"]) == [0, 1]
    assert main(["train-agent", *common, "--scores", c.scores, "--table", c.table,
                 "--out", str(run / "agent.pt"), "--scores-out", str(run / "agent_scores.parquet"),
                 "--compute", str(run / "agent_compute.json")]) == 0
    compute = json.loads((run / "agent_compute.json").read_text())
    assert compute["records"] == 2 and compute["agent_iterations"] == 3 and compute["fallbacks"] <= 1
    assert compute["fallbacks"] + compute["beyond_threshold_without_fallback"] <= 3
    ckpt = torch.load(run / "agent.pt", weights_only=True)
    assert set(ckpt["model"]) >= {"lstm.weight_ih_l0", "lstm.weight_hh_l0"} and len(ckpt["image_ids"]) == 30
    assert main(["select", "--params", ps, "--strategy", "mgral", "--scores", str(run / "agent_scores.parquet"),
                 "--budget", "6", "--seed", "0", "--cycle", "0", "--out", str(run / "selected.json")]) == 0
    chosen = [s["image_id"] for s in json.loads((run / "selected.json").read_text())["selected"]]
    assert len(chosen) == 6 == len(set(chosen)) and not set(chosen) & labeled_ids
    # selecting from the embeddings (not the agent's scores) stops with a message
    assert main(["select", "--params", ps, "--strategy", "mgral", "--scores", c.scores,
                 "--budget", "6", "--seed", "0", "--cycle", "0", "--out", str(tmp_path / "x.json")]) == 2
    assert main(["lookup-record", *common, "--strategy", "random", "--record", "0",
                 "--out", str(tmp_path / "y.json")]) == 2


def test_snakemake_dry_run_fans_out_one_job_per_record(tmp_path):
    d = tmp_path / "wf"
    d.mkdir()
    shutil.copy(ROOT / "Snakefile", d)
    shutil.copytree(ROOT / "workflow", d / "workflow", symlinks=False)
    p = yaml.safe_load((ROOT / "tests" / "data" / "params_tiny.yaml").read_text())
    p["active"].update(strategies=["random", "mgral"], cycles=3, seeds=[0, 1])
    p["strategies"]["mgral"] = {"records": 3}
    (d / "params.yaml").write_text(yaml.safe_dump(p))
    out = subprocess.run([BIN / "snakemake", "-n", "-p"], cwd=d, capture_output=True, text=True,
                         env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"})
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout
    counts = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
    selections = 2 * 2  # 2 seeds x 2 selecting cycles
    assert counts["build_lookup_table"] == 3 * selections
    assert counts["gather_lookup_table"] == counts["train_agent"] == counts["select_batch_mgral"] == selections
    assert counts["select_batch"] == selections  # random keeps the generic rule
    assert counts["mgral_compute"] == 1
    for r in range(3):
        assert f"--record {r} --out results/tiny/runs/mgral/seed1/cycle1/lookup/record{r}.json" in text
    run0 = "results/tiny/runs/mgral/seed0/cycle0"
    assert f"lookup-table --records {run0}/lookup/record0.json {run0}/lookup/record1.json " \
           f"{run0}/lookup/record2.json" in text
    assert "select --params" in text and "--scores results/tiny/runs/mgral/seed0/cycle0/agent_scores.parquet" in text
