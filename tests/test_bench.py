"""The benchmark suite: its statistics, goals, CSV merging, experiment readers, derived pools, and a --quick run."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from helpers.pipeline import ROOT

sys.path.insert(0, str(ROOT))  # bench/ is a folder of the repository, not part of the installed package

from bench.common import COLUMNS, Context, describe, goal_met, loglog_slope, parse_goal, write_csv
from bench.data import DerivedPool
from bench.end_to_end import job_seconds, last_run_log, parse_log
from bench.evaluation import pycocotools_stats, synthetic_detections
from bench.miaod import experiment_ratios


def make_ctx(tmp_path, quick=True) -> Context:
    return Context(device=torch.device("cpu"), quick=quick, out=tmp_path / "bench.csv", params={}, experiment=None,
                   repeats=1, machine="test machine")


# ------------------------------------------------------------------ statistics and goals
def test_describe_is_median_iqr_min_max():
    d = describe([4, 1, 100, 3, 2])
    assert d == {"value": 3.0, "spread": 2.0, "min": 1.0, "max": 100.0, "repeats": 5}  # q1 = 2, q3 = 4
    assert describe([7.5]) == {"value": 7.5, "spread": 0.0, "min": 7.5, "max": 7.5, "repeats": 1}
    with pytest.raises(ValueError):
        describe([])


def test_goals():
    assert goal_met(">= 0.8", 0.8) is True and goal_met(">= 0.8", 0.7999) is False
    assert goal_met("<= 1e-6", 0.0) is True and goal_met("<= 1e-6", 2e-6) is False
    assert goal_met("<= 1.25", float("nan")) is None and goal_met("", 3.0) is None
    assert parse_goal(">= 1e4")[1] == 1e4
    with pytest.raises(ValueError):
        parse_goal("> 3")


@pytest.mark.parametrize("k", [0.5, 1.0, 2.0])
def test_loglog_slope_recovers_the_exponent(k):
    n = np.array([1000, 2000, 4000, 8000])
    assert loglog_slope(n, 3e-4 * n ** k) == pytest.approx(k, abs=1e-9)


def test_add_computes_ratio_and_goal(tmp_path, capsys):
    ctx = make_ctx(tmp_path)
    r = ctx.add("s", "plain", [2.0, 4.0, 3.0], "s", reference="ref", reference_values=[1.0, 2.0, 1.5], goal="<= 1.25")
    assert r["value"] == 3.0 and r["reference_value"] == 1.5 and r["ratio"] == 2.0 and r["met"] is False
    # paired: the ratio is the median of the per-pair ratios, not the ratio of medians
    r = ctx.add("s", "paired", [1.0, 10.0, 3.0], "s", reference="ref", reference_values=[2.0, 5.0, 1.0],
                ratio_values=[0.5, 2.0, 3.0], goal=">= 0.9")
    assert r["ratio"] == 2.0 and r["ratio_spread"] == pytest.approx(1.25) and r["met"] is True
    r = ctx.add("s", "alone", 0.95, "", goal=">= 0.9")  # no reference: the goal applies to the value
    assert math.isnan(r["ratio"]) and r["met"] is True and r["repeats"] == 1
    ctx.unavailable("s", "missing", "no data")
    assert ctx.rows[-1]["repeats"] == 0 and ctx.rows[-1]["note"] == "not available: no data"
    assert "goal <= 1.25: NOT met" in capsys.readouterr().out


def test_write_csv_replaces_rows_with_the_same_key_only(tmp_path):
    path = tmp_path / "bench.csv"
    ctx = make_ctx(tmp_path)
    ctx.add("a", "x", 1.0, "s")
    ctx.add("b", "y", 2.0, "s")
    write_csv(ctx.rows, path)
    ctx2 = make_ctx(tmp_path)
    ctx2.add("a", "x", 5.0, "s")
    ctx2.add("a", "z", 6.0, "s")
    df = write_csv(ctx2.rows, path)
    assert list(pd.read_csv(path).columns) == COLUMNS
    got = {(r.section, r.name): r.value for r in pd.read_csv(path).itertuples()}
    assert got == {("a", "x"): 5.0, ("b", "y"): 2.0, ("a", "z"): 6.0} and len(df) == 3
    # the same figure from another device is kept beside it
    gpu = [dict(ctx2.rows[0], device="cuda (H100)", value=0.5)]
    write_csv(gpu, path)
    assert len(pd.read_csv(path)) == 4
    # a CSV of the earlier format (no section column) is replaced, not merged into garbage
    pd.DataFrame({"benchmark": ["old"], "value": [1.0]}).to_csv(path, index=False)
    write_csv(ctx.rows, path)
    assert list(pd.read_csv(path)["name"]) == ["x", "y"]


# ------------------------------------------------------------------ experiment readers
def _tsv(path: Path, seconds: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"s\th:m:s\tmax_rss\n{seconds}\t0:00:00\t1.0\n")


def _json(path: Path, **kv) -> None:
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(kv))


def fake_experiment(exp: Path) -> None:
    """Benchmarks of a tiny experiment with hand-chosen seconds (the totals are worked out in the tests)."""
    _tsv(exp / "initial/seed0/benchmark.tsv", 50)  # train 40 in-process + evaluate 6 + 4 start-up
    _json(exp / "initial/seed0/train.json", seconds=40)
    _json(exp / "initial/seed0/metrics.json", seconds=6)
    r0 = exp / "runs/random/seed0/cycle0"
    _tsv(r0 / "benchmarks/score.tsv", 5)
    _json(r0 / "score.json", score_seconds=1)
    _tsv(r0 / "benchmarks/select.tsv", 2)
    _tsv(r0 / "benchmarks/merge.tsv", 1)
    m0 = exp / "runs/miaod/seed0/cycle0"
    _tsv(m0 / "benchmarks/train.tsv", 45)
    _json(m0 / "train.json", seconds=40)
    _tsv(m0 / "benchmarks/evaluate.tsv", 7)
    _tsv(m0 / "benchmarks/score.tsv", 6)
    _json(m0 / "score.json", score_seconds=3)
    _tsv(m0 / "benchmarks/select.tsv", 2)
    _tsv(m0 / "benchmarks/merge.tsv", 1)
    for seed, (rt, rc, re_, mt, mc, me) in {0: (30, 25, 7, 48, 42, 8), 1: (20, 18, 5, 30, 27, 5)}.items():
        r1, m1 = exp / f"runs/random/seed{seed}/cycle1", exp / f"runs/miaod/seed{seed}/cycle1"
        _tsv(r1 / "benchmarks/train.tsv", rt)
        _json(r1 / "train.json", seconds=rc)
        _tsv(r1 / "benchmarks/evaluate.tsv", re_)
        _tsv(m1 / "benchmarks/train.tsv", mt)
        _json(m1 / "train.json", seconds=mc)
        _tsv(m1 / "benchmarks/evaluate.tsv", me)


def fake_log(path: Path, start: float, elapsed: str, finished: bool = True, jobs: int = 17) -> None:
    date = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(start))
    text = (f"SNAKEMAKE\n=========\n  Date: {date}\n  Command: snakemake --cores all\n"
            f"job      count\n-----  -----\ntrain_detector 2\ntotal     {jobs}\n\n")
    if finished:
        text += f"{jobs} of {jobs} steps (100%) done\nElapsed time: {elapsed}\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


# training 40+25+18+40+42+27, scoring 1+3, selection 2+2, evaluation 6+7+5+7+8+5,
# bookkeeping = job seconds outside the in-process compute: 4 + 4+1 + 5+2 + 5+3+1 + 6+3
SPLIT = {"training": 192.0, "scoring": 4.0, "selection": 4.0, "evaluation": 38.0, "bookkeeping": 34.0}


def test_job_seconds_split_by_category(tmp_path):
    fake_experiment(tmp_path / "exp")
    got = job_seconds(tmp_path / "exp")
    assert got == pytest.approx(SPLIT)
    assert sum(got.values()) == pytest.approx(50 + 5 + 2 + 1 + 45 + 7 + 6 + 2 + 1 + 30 + 7 + 20 + 5 + 48 + 8 + 30 + 5)


def test_last_run_log_picks_the_run_that_wrote_the_experiment(tmp_path):
    exp = tmp_path / "exp"
    fake_experiment(exp)
    start = float(int(time.time())) - 10_000
    for f in exp.rglob("*.tsv"):
        os.utime(f, (start + 60, start + 60))
    later = exp / "runs/random/seed0/cycle0/benchmarks/merge.tsv"  # a job of a later run
    os.utime(later, (start + 5000, start + 5000))
    logs = tmp_path / "logs"
    fake_log(logs / "2020-01-01T000000.000000.snakemake.log", start, "0:02:16")
    fake_log(logs / "2020-01-02T000000.000000.snakemake.log", start + 2000, "0:00:05")  # wrote nothing of exp
    fake_log(logs / "2020-01-03T000000.000000.snakemake.log", start + 4900, "0:00:00", finished=False)
    info = last_run_log(exp, logs)
    assert info["path"].endswith("2020-01-01T000000.000000.snakemake.log")
    assert info["seconds"] == 136.0 and info["jobs"] == 17 and info["command"] == "snakemake --cores all"
    got = job_seconds(exp, *info["window"])
    assert got == pytest.approx(dict(SPLIT, bookkeeping=33.0))  # the later merge job is not this run's
    assert parse_log(logs / "2020-01-03T000000.000000.snakemake.log") is None
    fake_log(logs / "x.snakemake.log", start, "1 day, 2:00:01.5")
    assert parse_log(logs / "x.snakemake.log")["seconds"] == 86400 + 7201.5


def test_miaod_cycle_ratios_pair_seed_and_cycle(tmp_path):
    fake_experiment(tmp_path / "exp")
    r = experiment_ratios(tmp_path / "exp")
    # cycle 0 of random has no train job of its own (the shared initial model): only cycle 1 pairs
    assert r["cycle"] == pytest.approx([(48 + 8) / (30 + 7), (30 + 5) / (20 + 5)])
    assert r["train"] == pytest.approx([48 / 30, 30 / 20])
    assert r["train_compute"] == pytest.approx([42 / 25, 27 / 18])


# ------------------------------------------------------------------ inputs
class _Base:
    """Two 4x6 images with one box each: what DerivedPool needs of a DetectionDataset."""

    categories = [{"id": 1, "name": "a"}]

    def __init__(self):
        g = torch.Generator().manual_seed(0)
        self.images = [torch.randint(0, 255, (3, 4, 6), generator=g, dtype=torch.uint8) for _ in range(2)]
        self.records = [({"id": 10 + i, "width": 6, "height": 4, "file_name": f"{i}.png"}, None, None, None)
                        for i in range(2)]

    def __len__(self):
        return 2

    def __getitem__(self, i):
        return self.images[i], {"boxes": torch.tensor([[1.0, 0.0, 2.0, 3.0]]), "image_id": 10 + i}


def test_derived_pool_flips_and_permutes_distinct_copies():
    base = _Base()
    pool = DerivedPool(base, 24)
    assert len(pool) == 24 and [r[0]["id"] for r in pool.records] == list(range(1, 25))
    img0, t0 = pool[0]
    assert torch.equal(img0, base.images[0]) and t0["image_id"] == 1
    # images 2..: variant 1 = no flip, channels (0, 2, 1); variant 3 = no flip ...; variant 6 = flipped
    img, t = pool[2 * 6]
    assert torch.equal(img, base.images[0].flip(-1))
    assert t["boxes"].tolist() == [[4.0, 0.0, 5.0, 3.0]] and t["image_id"] == 13
    img, _ = pool[3]
    assert torch.equal(img, base.images[1][[0, 2, 1]])
    flat = {tuple(pool[i][0].flatten().tolist()) for i in range(24)}
    assert len(flat) == 24  # every derived image differs
    # variants 12..23 are upside down: image 0 under variant 12, its box's y range mirrored in the height 4
    pool = DerivedPool(base, 48)
    img, t = pool[2 * 12]
    assert torch.equal(img, base.images[0].flip(-2)) and t["boxes"].tolist() == [[1.0, 1.0, 2.0, 4.0]]
    assert len({tuple(pool[i][0].flatten().tolist()) for i in range(48)}) == 48
    with pytest.raises(ValueError):
        DerivedPool(base, 49)


def test_synthetic_detections_are_fixed_and_evaluate_like_pycocotools():
    from activedet.evaluation.coco import COCO_STAT_NAMES, coco_evaluate

    gt = {"info": {}, "licenses": [], "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
          "images": [{"id": i, "width": 64, "height": 64, "file_name": f"{i}.png"} for i in (1, 2, 3)],
          "annotations": [{"id": k, "image_id": 1 + k % 3, "category_id": 1 + k % 2, "bbox": [5.0 + k, 6.0, 20.0, 18.0],
                           "area": 360.0, "iscrowd": 0} for k in range(7)]}
    dets = synthetic_detections(gt, per_image=30)
    assert dets == synthetic_detections(gt, per_image=30)
    assert [sum(d["image_id"] == i for d in dets) for i in (1, 2, 3)] == [30, 30, 30]
    ours = coco_evaluate(gt, dets)
    ref = pycocotools_stats(gt, dets)
    assert np.abs(np.array([ours[k] for k in COCO_STAT_NAMES]) - ref).max() <= 1e-12
    assert 0 < ours["AP50"] <= 1


# ------------------------------------------------------------------ the suite itself
@pytest.mark.slow
def test_quick_run_writes_every_section(tmp_path):
    exp = tmp_path / "exp"
    fake_experiment(exp)
    start = float(int(time.time())) - 1000
    for f in exp.rglob("*.tsv"):
        os.utime(f, (start + 10, start + 10))
    fake_log(tmp_path / "logs" / "a.snakemake.log", start, "0:02:16")
    out = tmp_path / "bench" / "bench.csv"
    p = subprocess.run([sys.executable, "-m", "bench", "--quick", "--out", str(out), "--experiment", str(exp),
                        "--snakemake-logs", str(tmp_path / "logs")], cwd=ROOT, capture_output=True, text=True,
                       env={**os.environ, "MPLBACKEND": "Agg"})
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    df = pd.read_csv(out)
    assert list(df.columns) == COLUMNS
    sections = set(df["section"])
    assert {"1 detector", "2 miaod", "3 scoring", "4 evaluation", "5 mgral", "6 end to end", "7 scaling"} <= sections
    assert not (df["name"] == "section failed").any()
    measured = df[df["repeats"] > 0]
    assert np.isfinite(measured["value"]).all() and (measured["min"] <= measured["value"]).all()
    assert (measured["value"] <= measured["max"]).all()
    timed = measured[measured["unit"].isin(["s", "ms", "images/s", "GFLOP/s", "MFLOP"])]
    assert (timed["value"] > 0).all()
    unpaired = measured[measured["reference_value"].notna() & measured["ratio_spread"].isna()]
    assert np.allclose(unpaired["ratio"], unpaired["value"] / unpaired["reference_value"])
    with_goal = measured[measured["goal"].notna()]
    assert with_goal["met"].notna().all()
    by_name = df.set_index(["section", "name"])
    assert by_name.loc[("4 evaluation", "COCO stats: max |ours - pycocotools| over the 12 stats"), "value"] <= 1e-6
    # item 3: the convolutions are part of the profiled step, and the fraction they alone would reach is the
    # step's FLOPs over their seconds (quick: batch 2); checked by hand from the rows, not against a timing
    det = df[df["section"] == "1 detector"].set_index("name")
    share = det.loc[det.index.str.startswith("convolutions' share of a training step, default")]
    alone = det.loc[det.index.str.startswith("fraction of the machine limit with the convolutions alone, default")]
    mflop = det.loc[det.index.str.startswith("training FLOPs per image, default"), "value"]
    assert len(share) == len(alone) == len(mflop) == 1
    assert 0 < share["ratio"].iloc[0] < 1
    assert alone["value"].iloc[0] == pytest.approx(mflop.iloc[0] * 2 / share["value"].iloc[0], rel=1e-3)
    assert alone["ratio"].iloc[0] == pytest.approx(alone["value"].iloc[0] / alone["reference_value"].iloc[0], rel=1e-3)
    # items 2 and 6 read the fake experiment: hand-computed figures
    cycle = by_name.loc[("2 miaod", "MI-AOD cycle time / random cycle time")]
    assert cycle["value"] == pytest.approx(np.median([56 / 37, 35 / 25]), rel=1e-5) and cycle["repeats"] == 2
    assert by_name.loc[("6 end to end", "wall time of the run"), "value"] == 136
    assert by_name.loc[("6 end to end", "training: share of the wall time"), "value"] == pytest.approx(96.0)
    assert by_name.loc[("6 end to end", "evaluation: share of the wall time"), "ratio"] == pytest.approx(38 / 272)
    # every registered strategy is scored (or says why not) and scaled over three pool sizes
    from activedet.strategies import STRATEGIES

    scoring = df[df["section"] == "3 scoring"]["name"]
    for name in STRATEGIES:
        assert scoring.str.startswith(f"{name}:").any(), name
    assert df["name"].str.match(r"coreset: scoring, 112 images").any()
    assert df["name"].str.match(r"coreset: k-center greedy, 4 centres from 112 images").any()
    assert (tmp_path / "bench" / "scaling_quick_cpu.png").is_file()
    assert not list((tmp_path / "bench").glob(".scratch-*"))  # the scratch folder is removed


def test_job_table_sums_benchmark_files_per_kind_of_job(tmp_path):
    from bench.job_table import job_table

    def tsv(path, s, cpu):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"s\th:m:s\tmax_rss\tcpu_time\n{s}\t0:00:01\t10\t{cpu}\n")

    exp = tmp_path / "exp"
    tsv(exp / "runs" / "random" / "seed0" / "cycle1" / "benchmarks" / "train.tsv", 10.0, 9.0)
    tsv(exp / "runs" / "entropy" / "seed0" / "cycle1" / "benchmarks" / "train.tsv", 20.0, 18.0)
    tsv(exp / "runs" / "mgral" / "seed0" / "cycle1" / "benchmarks" / "lookup_record3.tsv", 5.0, 4.0)
    tsv(exp / "runs" / "mgral" / "seed0" / "cycle1" / "benchmarks" / "lookup_record12.tsv", 6.0, 5.0)
    tsv(exp / "initial" / "seed0" / "benchmark.tsv", 7.0, 6.5)
    tsv(exp / "runs" / "miaod_pe" / "seed0" / "cycle1" / "benchmarks" / "share_twin_model.pt.tsv", 0.5, 0.5)
    tsv(exp / "runs" / "miaod_pe" / "seed0" / "cycle1" / "benchmarks" / "share_twin_labeled.json.tsv", 0.5, 0.5)
    tsv(exp / "checks" / "check_dataset.tsv", 1.0, 0.5)
    tsv(exp / "reference" / "seed1" / "benchmark.tsv", 3.0, 3.0)
    tsv(exp / "paper" / "table2" / "miaod" / "seed0.tsv", 2.0, 2.0)
    tsv(exp / "paper" / "table2" / "random" / "seed0.tsv", 2.0, 1.0)
    tsv(exp / "paper" / "fig7" / "random" / "seed0" / "cycle1.tsv", 1.0, 1.0)
    tsv(exp / "paper" / "benchmarks" / "miaod_fig5.tsv", 1.0, 1.0)
    tsv(exp / "paper" / "benchmarks" / "miaod_fig7.tsv", 1.0, 1.0)
    t = job_table(exp).set_index("step")
    # the reference, Table 2's runs and Fig. 7's cycles are their own kinds, not "seed" or "cycle"
    assert t.loc["reference", "jobs"] == 1 and t.loc["table2 run", "jobs"] == 2 and t.loc["table2 run", "cpu_s"] == 3.0
    assert t.loc["fig7 run", "jobs"] == 1 and t.loc["miaod_fig5", "jobs"] == 1 and t.loc["miaod_fig7", "jobs"] == 1
    assert not {"seed", "seed1", "cycle", "miaod_fig"} & set(t.index)
    assert t.loc["total", "jobs"] == 14 and t.loc["total", "wall_s"] == 60.0
    assert t.loc["share_twin", "jobs"] == 2 and not [k for k in t.index if k.startswith("share_twin_")]
    t = t.drop(["reference", "table2 run", "fig7 run", "miaod_fig5", "miaod_fig7", "share_twin", "total"])
    assert t.loc["train", "jobs"] == 2 and t.loc["train", "wall_s"] == 30.0 and t.loc["train", "cpu_s"] == 27.0
    assert t.loc["lookup_record", "jobs"] == 2 and t.loc["lookup_record", "cpu_s"] == 9.0
    assert t.loc["train_initial+evaluate", "wall_s"] == 7.0 and t.loc["check_dataset", "jobs"] == 1
    assert t["jobs"].sum() == 6 and t["wall_s"].sum() == 49.0
    # seeds: seed 0's jobs and those of no seed (the dataset check, the paper's shared figures); seed 1's
    # reference is left out
    t = job_table(exp, seeds=[0]).set_index("step")
    assert "reference" not in t.index and t.loc["total", "jobs"] == 13 and t.loc["total", "wall_s"] == 57.0
    t = job_table(exp, seeds=[1]).set_index("step")
    assert set(t.index) == {"reference", "check_dataset", "miaod_fig5", "miaod_fig7", "total"}
    assert t.loc["total", "jobs"] == 4 and t.loc["total", "wall_s"] == 6.0
    # strategies: random's jobs and those of no strategy (the shared cycle 0, the check, the reference, the
    # paper's files); entropy's, MGRAL's and the twin's are left out
    t = job_table(exp, strategies=["random"]).set_index("step")
    assert "lookup_record" not in t.index and "share_twin" not in t.index
    assert t.loc["train", "jobs"] == 1 and t.loc["train", "cpu_s"] == 9.0
    assert t.loc["total", "jobs"] == 14 - 5 and t.loc["total", "wall_s"] == 60.0 - 20.0 - 11.0 - 1.0
    t = job_table(exp, seeds=[0], strategies=["miaod_pe", "mgral"]).set_index("step")
    assert t.loc["total", "jobs"] == 13 - 2 and "train" not in t.index and t.loc["share_twin", "jobs"] == 2


def test_job_overhead_splits_each_job_into_its_recorded_work_and_the_rest(tmp_path):
    from bench.job_overhead import overhead_table, probe_cpu_seconds

    def tsv(path, s):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"s\th:m:s\tmax_rss\tcpu_time\n{s}\t0:00:01\t10\t{s}\n")

    def record(path, **values):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))

    exp = tmp_path / "exp"
    run = exp / "runs" / "mgral" / "seed0" / "cycle1"
    tsv(run / "benchmarks" / "train.tsv", 100.0)
    record(run / "train.json", seconds=96.0, load_seconds=0.5)
    tsv(run / "benchmarks" / "evaluate.tsv", 10.0)
    record(run / "metrics.json", seconds=6.0, map50=0.5)
    tsv(run / "benchmarks" / "score.tsv", 8.0)
    record(run / "score.json", score_seconds=1.0, total_seconds=3.0)
    tsv(run / "benchmarks" / "lookup_record3.tsv", 9.0)  # reads lookup/record3.json, not record1.json
    record(run / "lookup" / "record3.json", seconds=5.0)
    record(run / "lookup" / "record1.json", seconds=1.0)
    tsv(run / "benchmarks" / "predict_stop_set.tsv", 4.0)  # keeps no record: outside as a whole
    tsv(run / "benchmarks" / "select.tsv", 2.0)  # its record is missing: outside as a whole
    tsv(exp / "initial" / "seed0" / "benchmark.tsv", 50.0)  # the shared cycle 0 trains and evaluates
    record(exp / "initial" / "seed0" / "train.json", seconds=40.0)
    record(exp / "initial" / "seed0" / "metrics.json", seconds=6.0)
    tsv(exp / "pretrained" / "benchmark.tsv", 30.0)
    record(exp / "pretrained" / "pretrain.json", seconds=30.5)  # rounding above the wall: clipped to it
    t = overhead_table(exp).set_index("step")
    assert t.loc["train", "outside_s"] == 4.0 and t.loc["evaluate", "outside_s"] == 4.0
    assert t.loc["score", "outside_s"] == 5.0 and t.loc["lookup_record", "outside_s"] == 4.0
    assert t.loc["predict_stop_set", "outside_s"] == 4.0 and not t.loc["predict_stop_set", "recorded"]
    assert t.loc["select", "outside_s"] == 2.0 and not t.loc["select", "recorded"]
    assert t.loc["train_initial+evaluate", "outside_s"] == 4.0 and t.loc["pretrained", "outside_s"] == 0.0
    total = t.loc["total"]
    assert total["jobs"] == 8 and total["wall_s"] == 213.0 and total["outside_s"] == 27.0
    assert total["outside_share"] == pytest.approx(27.0 / 213.0)
    assert t.loc["train", "outside_share"] == pytest.approx(0.04)
    assert 0 < probe_cpu_seconds(["-c", "pass"], 1) < 30


def test_split_half_noise_by_hand():
    from bench.noise import split_half_table

    # two seeds: whole test set 0.5 / 0.6 (sd 0.0707); one halving: half a 0.5 / 0.7 (sd 0.1414), half b 0.5 / 0.5
    # (sd 0): sd_half = sqrt((0.02 + 0) / 2) = 0.1, t^2 = 0.01 - 0.005, s^2 = 0.005 - 0.005 = 0
    maps = pd.DataFrame({"seed": [0, 1], "cycle": [2, 2], "n_labeled": [300, 300], "full": [0.5, 0.6],
                         "half_0_a": [0.5, 0.7], "half_0_b": [0.5, 0.5]})
    row = split_half_table(maps, n_test=10, splits=1).iloc[0]
    assert row["sd_full"] == pytest.approx(math.sqrt(0.005)) and row["sd_half"] == pytest.approx(0.1)
    assert row["sd_test"] == pytest.approx(math.sqrt(0.005)) and row["sd_rest"] == pytest.approx(0.0, abs=1e-6)
    assert row["n_seeds"] == 2 and row["map50_mean"] == pytest.approx(0.55) and row["n_labeled"] == 300
    # halves that spread no more than the whole set: the test set adds nothing
    maps["half_0_a"], maps["half_0_b"] = [0.5, 0.6], [0.49, 0.59]
    row = split_half_table(maps, n_test=10, splits=1).iloc[0]
    assert row["sd_test"] == 0.0 and row["sd_rest"] == pytest.approx(row["sd_full"])


def test_noise_on_an_experiment_without_models_is_an_input_error(tmp_path, capsys):
    from bench.noise import main

    assert main([str(tmp_path), "--out", str(tmp_path / "x.csv")]) == 2
    assert "error:" in capsys.readouterr().err and not (tmp_path / "x.csv").exists()
    model = tmp_path / "runs" / "random" / "seed0" / "cycle0" / "model.pt"
    model.parent.mkdir(parents=True)
    model.write_bytes(b"not a checkpoint")
    assert main([str(tmp_path), "--out", str(tmp_path / "x.csv")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "model.pt" in err and "Traceback" not in err


def test_peak_memory_sees_a_temporary_array():
    from bench.common import peak_memory

    cpu = torch.device("cpu")
    _, idle = peak_memory(lambda: None, cpu)
    if math.isnan(idle):
        pytest.skip("no resettable peak RSS on this system")
    # 200 MiB held only inside the call: the peak sees it, the value it returns is the call's
    out, peak = peak_memory(lambda: float(np.ones(25 * 2 ** 20).sum()), cpu)
    assert out == 25 * 2 ** 20 and peak - idle >= 150
    _, after = peak_memory(lambda: None, cpu)  # reset: the next step's peak does not carry the array
    assert after < peak - 100


def test_postprocess_profile_times_forward_postprocess_and_its_ops():
    """Every row names its part; the postprocess's ops include torchvision's NMS once candidates exist, and the
    bound is forward / (forward + postprocess)."""
    from activedet import params as P
    from activedet.models import build_model
    from bench.postprocess_profile import profile_model

    torch.manual_seed(0)
    model = build_model(P.load(None), 3).eval()
    model.postprocess_cfg["score_threshold"] = 0.0  # an untrained model's scores are ~0.01: every one a candidate
    rows = profile_model(model, [torch.rand(2, 3, 64, 64) for _ in range(3)])
    parts = {r["part"]: r for r in rows}
    f, p = parts["forward"]["ms_per_batch"], parts["postprocess"]["ms_per_batch"]
    assert f > 0 and p > 0 and parts["forward"]["bound"] == pytest.approx(f / (f + p))
    assert parts["torchvision::nms"]["calls_per_batch"] == 2  # one call per image
    assert parts["forward"]["candidates_per_image"] > parts["forward"]["detections_per_image"] > 0


def test_postprocess_profile_without_the_model_is_an_input_error(tmp_path, capsys):
    from bench.postprocess_profile import main

    assert main([str(tmp_path), "--out", str(tmp_path / "x.csv"), "--annotations", str(tmp_path / "none.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err and not (tmp_path / "x.csv").exists()


def test_miaod_profile_splits_convolutions_from_the_rest_and_weighs_the_phases():
    """conv + other = total per step; a step without a convolution has none; the weighted row is the phases'
    rows times their weights; ratios are to the plain step."""
    from bench.miaod_profile import profile_steps

    conv = torch.nn.Conv2d(3, 8, 3)
    x = torch.rand(2, 3, 16, 16)
    steps = {"plain": lambda: conv(x), "label": lambda: (conv(x), conv(x)), "min": lambda: x.sum(),
             "max": lambda: conv(x).sum()}
    weights = {"label": 0.5, "min": 0.25, "max": 0.25}
    t = profile_steps(steps, weights, repeats=2).set_index("step")
    assert list(t.index) == ["plain", "label", "min", "max", "weighted"]
    assert (t["conv_ms"] + t["other_ms"]).tolist() == pytest.approx(t["total_ms"].tolist())
    assert t.loc["min", "conv_ms"] == 0 and t.loc["plain", "conv_ms"] > 0 and t.loc["label", "conv_ms"] > 0
    for c in ("conv_ms", "other_ms", "total_ms"):
        assert t.loc["weighted", c] == pytest.approx(sum(w * t.loc[ph, c] for ph, w in weights.items()))
        ratio = c.replace("_ms", "_ratio")
        assert t[ratio].tolist() == pytest.approx((t[c] / t.loc["plain", c]).tolist())
    assert t.loc["plain", "total_ratio"] == 1 and t.loc["weighted", "weight"] == 1


def test_miaod_profile_runs_the_steps_of_training(tmp_path):
    from bench.miaod_profile import main

    out = tmp_path / "profile.csv"
    # 3 profiled repeats per step: one sample of the plain step alone can be slowed enough to flip a ratio
    assert main(["--quick", "--steps", "3", "--out", str(out)]) == 0
    t = pd.read_csv(out).set_index("step")
    assert list(t.index) == ["plain", "label", "min", "max", "weighted"]
    # MI-AOD's label step runs four towers where the plain step runs two; min and max add the unlabeled step.
    # Counted, not timed: the times' ratios move with the machine's load (a loaded CI once saw max at 0.93).
    calls = t["conv_calls"]
    assert (calls[["label", "min", "max"]] > calls["plain"]).all() and calls["min"] > calls["label"]
    assert (t["conv_ms"] > 0).all() and (t["conv_ratio"] > 0).all()
    assert [p.name for p in tmp_path.iterdir()] == ["profile.csv"]  # the scratch folder is gone


def test_set_and_training_components_by_hand():
    from bench.set_noise import variance_components

    # set 0: 0.5 / 0.7 (mean 0.6), set 1: 0.8 / 0.8; MS_within = (0.01 + 0.01 + 0 + 0) / 2 = 0.01,
    # MS_between = 2 * (0.01 + 0.01) / 1 = 0.04, sd_set^2 = (0.04 - 0.01) / 2 = 0.015
    t = pd.DataFrame({"seed": [0, 0, 1, 1], "map50": [0.5, 0.7, 0.8, 0.8]})
    c = variance_components(t)
    assert c["sd_training"] == pytest.approx(0.1) and c["sd_set"] == pytest.approx(math.sqrt(0.015))
    assert c["sd_one_training"] == pytest.approx(math.sqrt(0.025)) and (c["n_sets"], c["trainings_per_set"]) == (2, 2)
    # sets that differ less than their trainings: no set component left
    assert variance_components(pd.DataFrame({"seed": [0, 0, 1, 1], "map50": [0.5, 0.7, 0.7, 0.5]}))["sd_set"] == 0
    with pytest.raises(ValueError, match="same number"):
        variance_components(pd.DataFrame({"seed": [0, 0, 1], "map50": [0.5, 0.7, 0.8]}))


def test_set_noise_reads_the_runs_and_their_retrainings(tmp_path, capsys):
    from bench.set_noise import main

    exp, re_ = tmp_path / "exp", tmp_path / "retrained"
    for seed, own, again in [(0, 0.5, 0.7), (1, 0.8, 0.8), (2, 0.9, None)]:  # seed 2 was not retrained: left out
        m = exp / "runs" / "random" / f"seed{seed}" / "cycle4" / "metrics.json"
        m.parent.mkdir(parents=True)
        m.write_text(json.dumps({"map50": own, "coco_ap": own / 2}))
        (m.parent / "model.pt").touch()  # a finished cycle: its model beside its metrics
        if again is not None:
            re_.mkdir(exist_ok=True)
            (re_ / f"s{seed}_t11.metrics.json").write_text(json.dumps({"map50": again, "coco_ap": again / 2}))
    args = [str(exp), "--cycle", "4", "--retrained", str(re_), "--out", str(tmp_path / "t.csv"),
            "--summary", str(tmp_path / "s.csv")]
    assert main(args) == 0
    s = pd.read_csv(tmp_path / "s.csv").set_index("metric")
    assert s.loc["map50", "sd_set"] == pytest.approx(math.sqrt(0.015), rel=1e-5) and s.loc["map50", "n_sets"] == 2
    assert s.loc["coco_ap", "sd_set"] == pytest.approx(math.sqrt(0.015) / 2, rel=1e-5)  # half the values, half the sd
    assert len(pd.read_csv(tmp_path / "t.csv")) == 4
    (re_ / "s1_t12.metrics.json").write_text(json.dumps({"map50": 0.8, "coco_ap": 0.4}))  # set 1 trained 3 times, set 0 twice
    assert main(args) == 2
    assert capsys.readouterr().err.startswith("error: ")
    (re_ / "s1_t12.metrics.json").write_text(json.dumps({"map50": 0.8}))  # no COCO AP: named, not a KeyError
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "s1_t12.metrics.json: no coco_ap" in err and "Traceback" not in err


def test_set_noise_takes_the_runs_own_trainings_from_a_committed_curves_file(tmp_path, capsys):
    """The same analysis as above, the run's own values read from curves.csv rows (other strategies and cycles
    ignored) with no experiment folder at all."""
    from bench.set_noise import main

    re_ = tmp_path / "retrained"
    re_.mkdir()
    rows = [("random", 0, 4, 0.5), ("random", 1, 4, 0.8), ("random", 2, 4, 0.9), ("random", 0, 3, 0.1),
            ("entropy", 0, 4, 0.2)]
    curves = pd.DataFrame(rows, columns=["strategy", "seed", "cycle", "map50"]).assign(coco_ap=lambda d: d.map50 / 2)
    for column in ("n_labeled", "fraction", "map50_area", "coco_ap50", "n_boxes", "annotation_s"):  # a real file's
        curves[column] = 0
    curves.to_csv(tmp_path / "curves.csv", index=False)
    for seed, again in [(0, 0.7), (1, 0.8)]:
        (re_ / f"s{seed}_t11.metrics.json").write_text(json.dumps({"map50": again, "coco_ap": again / 2}))
    args = [str(tmp_path / "gone"), "--cycle", "4", "--retrained", str(re_), "--out", str(tmp_path / "t.csv"),
            "--summary", str(tmp_path / "s.csv"), "--own-curves", str(tmp_path / "curves.csv")]
    assert main(args) == 0
    s = pd.read_csv(tmp_path / "s.csv").set_index("metric")
    assert s.loc["map50", "sd_set"] == pytest.approx(math.sqrt(0.015), rel=1e-5) and s.loc["map50", "n_sets"] == 2
    assert s.loc["map50", "sd_own_seeds"] == pytest.approx(pd.Series([0.5, 0.8]).std(), rel=1e-5)
    t = pd.read_csv(tmp_path / "t.csv")
    assert sorted(zip(t["seed"], t["training_seed"].astype(str))) == [(0, "11"), (0, "own"), (1, "11"), (1, "own")]
    curves.drop(columns="coco_ap").to_csv(tmp_path / "curves.csv", index=False)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "curves.csv: not a curves.csv of activedet (no column coco_ap)" in err
    assert main(args[:-1] + [str(tmp_path / "none.csv")]) == 2 and "none.csv: file not found" in capsys.readouterr().err
    curves[curves["cycle"] == 4].assign(cycle=5).to_csv(tmp_path / "curves.csv", index=False)  # none at cycle 4
    assert main(args) == 2 and "no row of strategy random at cycle 4" in capsys.readouterr().err


def test_convergence_rows_record_the_overrides_and_scale_the_recipe(tmp_path, capsys):
    import yaml

    from activedet import params as P
    from bench.convergence import COLUMNS as SWEEP_COLUMNS
    from bench.convergence import main

    params = P.load(ROOT / "params.yaml")
    params["dataset"]["digit_scenes"].update(n_pool=40, n_test=12)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    out = tmp_path / "sweep.csv"
    args = ["--params", str(tmp_path / "params.yaml"), "--data", str(tmp_path / "data"), "--backbone", "none",
            "--fractions", "0.25", "--seeds", "0", "--factors", "0.005", "0.01", "--frozen-stages", "-1",
            "--lr", "0.005", "--scratch", str(tmp_path / "scratch"), "--out", str(out)]
    assert main(args) == 0
    rows = pd.read_csv(out)
    assert list(rows.columns) == SWEEP_COLUMNS and out.read_text().count("\r") == 0
    # 25% of 40 images = 10; the recipe gives max(ceil(192 * 10 / 16), 2400) = 2400 iterations, times 0.005 and 0.01
    assert rows["n_labeled"].tolist() == [10, 10] and rows["iterations"].tolist() == [12, 24]
    assert rows["epochs"].tolist() == [19.2, 38.4]  # iterations x batch 16 / 10 images
    assert rows["lr"].tolist() == [0.005, 0.005] and rows["frozen_stages"].tolist() == [-1, -1]
    assert rows["backbone"].tolist() == ["random init"] * 2 and rows["map50"].between(0, 1).all()
    assert len(list((tmp_path / "scratch").glob("*_fz-1_lr0.005.pt"))) == 2  # the overrides name the models
    # a sweep written before a column was added: refused, not appended under the wrong header
    old = tmp_path / "old.csv"
    old.write_text(",".join(c for c in SWEEP_COLUMNS if c != "lr") + "\n")
    before = old.read_text()
    assert main(args[:-1] + [str(old)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {old}: its header is") and old.read_text() == before
